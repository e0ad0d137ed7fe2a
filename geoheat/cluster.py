"""Reading and counting on a Dask cluster (`--scheduler ADDRESS` or `local:N`).

The same two passes as a build on one machine, with the same functions, so the
result is the local build's bit for bit:

1. Workers read the files (reading.read_files, a batch of files a task). Each
   batch's parsed files, points and all, stay in the worker's memory (Dask spills
   them to disk if need be; a lost worker's batches are read again by Dask); only
   their summaries (`ParsedFile.without_points`) travel to the client, which
   selects the activities and chooses the area, zoom and grid as locally.
2. Workers count the kept activities of each batch on the grid inside the box
   (extent.inside, rasterize.select_points, rasterize.count_tracks, summed with
   rasterize.add_counts) where the batch already is; the sparse tile counts are
   summed pairwise on the workers as they finish (a tree reduction: uint32 sums do
   not depend on the order) and the client receives the final sum only.

Failures: a file that cannot be read becomes a ParsedFile with its error on the
worker, as locally, so it is skipped and reported the same way; a task whose worker
dies is run again by Dask, a task that raises is retried (RETRIES) and then its
error is raised here; Ctrl-C (KeyboardInterrupt) cancels every future of the build,
closes a `local:N` cluster and is raised again.

Inputs may be fsspec URLs (url_sources.py), listed on the client, read on the workers.
The client and its cluster are a dask_session.Session; DaskBackend is the session
reading and counting (backends.py's `dask`).

Dask and fsspec are the optional `dask` extra: imported here, inside functions, and
this module only when a build asks for a scheduler.
"""

import contextlib
import math
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import cache
from .counting import Counted
from .dask_session import Session
from .errors import InputError
from .checks import available_memory
from .options import DEFAULT_MAX_FILE_SIZE
from .rasterize import add_counts, count_activity
from .reading import read_files, with_index
from .source_bytes import Source
from .url_sources import UrlSource, find_all_sources, parse_url

RETRIES = 2  # a task that raises is tried this many times more before the build fails
# Files per reading task: enough to hide the per-task overhead (~1 ms of scheduling
# and a round trip), few enough that every worker gets several tasks to balance.
MAX_FILES_PER_TASK = 16
TASKS_PER_WORKER = 4


class DaskBackend(Session):
    """The `dask` backend: a build's files read and its activities counted on the
    workers of a Dask session (local:N or a scheduler's address)."""

    name = "dask"

    # --- pass 1: read ----------------------------------------------------------------

    def read(self, options, warn, progress=None):
        """The sources of options.inputs (local paths and fsspec URLs) and their parsed
        files without points, in source order; the batches stay on the workers."""
        sources = find_all_sources(options.inputs, options.pattern, warn)
        per_task = files_per_task(len(sources), self.workers)
        self._batches = [sources[i:i + per_task] for i in range(0, len(sources), per_task)]
        token = uuid.uuid4().hex[:8]
        client = self.client
        self._read = client.map(
            read_batch, self._batches, cache_dir=options.parse_cache,
            max_bytes=options.max_file_size, retries=RETRIES,
            key=[f"geoheat-read-{token}-{i}" for i in range(len(self._batches))])
        light = client.map(strip_points, self._read, retries=RETRIES,
                           key=[f"geoheat-light-{token}-{i}" for i in range(len(self._read))])
        self.futures += self._read + light
        self._token = token
        if progress is not None and light:
            from distributed import as_completed

            done = as_completed(light, loop=client.loop)
            for _ in progress(done, "Reading activities", len(light)):
                pass
        with self._killed_workers():
            batches = client.gather(light)
        self.bytes_to_client += _sizeof(batches)
        self.release(light)
        parsed = [p for batch in batches for p in batch]
        return sources, parsed

    # --- pass 2: count ---------------------------------------------------------------

    def count(self, kept, source_of, box, grids, options, result, warn=None,
              privacy=None) -> Counted:
        """LocalBackend.count on the workers: the kept activities counted on each of
        `grids` where their batch was read (source_of is not needed: the workers hold the
        points), the tile counts summed in a tree. The workers are then freed (the rest
        of the build is the client's)."""
        from distributed import as_completed

        where = {}  # name -> (batch, position in the batch)
        for b, batch in enumerate(self._batches):
            for p, source in enumerate(batch):
                where[source.name] = (b, p)
        wanted: dict[int, list[tuple[int, int]]] = {}
        for k, activity in enumerate(kept):
            b, p = where[activity.name]
            wanted.setdefault(b, []).append((k, p))
        # Batches with nothing to draw: their points go now.
        self.release([f for b, f in enumerate(self._read) if b not in wanted])
        client, memory = self.client, None  # None: each sum task asks its machine
        order = sorted(wanted)
        counted = [client.submit(count_batch, self._read[b], wanted[b], box, grids, options.mode,
                                 privacy, retries=RETRIES, key=f"geoheat-count-{self._token}-{b}")
                   for b in order]
        self.futures += counted
        pending, sums, done = None, 0, as_completed(counted, loop=client.loop)
        with self._killed_workers():
            # Sum two results as soon as two are ready, on the workers: a tree whose
            # shape follows the finishing order (uint32 sums do not depend on it).
            for future in done:
                if future.status != "finished":
                    future.result()  # raises the task's error (after its retries) here
                if pending is None:
                    pending = future
                    continue
                total = client.submit(sum_counts, pending, future, grids, memory,
                                      retries=RETRIES, key=f"geoheat-sum-{self._token}-{sums}")
                sums += 1
                self.futures.append(total)
                done.add(total)
                pending = None
            counts, stats = pending.result()
        self.bytes_to_client += _sizeof(counts) + _sizeof(stats)
        self.cancel()  # the batches and partial sums are no longer needed
        self.close()
        drawn = np.zeros(len(kept), dtype=bool)
        used = outside = hidden = touched = 0
        for k, points, left, hid in stats:
            drawn[k] = bool(points)
            used, outside = used + points, outside + left
            hidden, touched = hidden + hid, touched + (hid > 0)
        return Counted(counts, used, outside, drawn, kept, (hidden, touched))

    @contextlib.contextmanager
    def _killed_workers(self):
        """A task that killed its worker again and again (Dask gives up after
        distributed.scheduler.allowed-failures deaths, 3 by default): one line naming
        the files it was reading."""
        from distributed import KilledWorker

        try:
            yield
        except KilledWorker as err:
            key = str(err.args[0]) if err.args else ""
            found = re.search(r"-(\d+)$", key)
            batch = self._batches[int(found.group(1))] if found and "-sum-" not in key else []
            what = (f"{batch[0].name}" + (f" and {len(batch) - 1} more files" if len(batch) > 1
                                          else "")) if batch else "the tile counts"
            raise InputError(f"the Dask workers handling {what} died again and again (out "
                             "of memory? see the workers' logs)") from None

def _sizeof(value) -> int:
    from dask.sizeof import sizeof

    return int(sizeof(value))


def files_per_task(files: int, workers: int) -> int:
    """Files per reading task: about TASKS_PER_WORKER tasks a worker, at most
    MAX_FILES_PER_TASK files each."""
    return max(1, min(MAX_FILES_PER_TASK, math.ceil(files / (workers * TASKS_PER_WORKER))))


# --- on the workers ------------------------------------------------------------------

def read_batch(batch: Sequence[Source | UrlSource], cache_dir: Path | None = None,
               max_bytes: int = DEFAULT_MAX_FILE_SIZE) -> list[cache.ParsedFile]:
    """A batch of sources parsed (reading.read_files, through the parse cache if one is
    given and the workers share it), points and all, in order."""
    parsed: list[cache.ParsedFile | None] = [None] * len(batch)
    local = [i for i, s in enumerate(batch) if isinstance(s, Source)]
    for i, p in zip(local, read_files([batch[i] for i in local], cache_dir, 1, None, max_bytes,
                                      prune=False)):  # a batch knows only its own files
        parsed[i] = p
    for i, source in enumerate(batch):
        if parsed[i] is None:
            p = parse_url(source.url, max_bytes)
            parsed[i] = with_index(p, source)
    return parsed


def strip_points(batch: list[cache.ParsedFile]) -> list[cache.ParsedFile]:
    """What the client needs of a batch: the parsed files without their points."""
    return [p.without_points() for p in batch]


def count_batch(batch: list[cache.ParsedFile], wanted: list[tuple[int, int]], box, grids,
                mode: str, privacy=None):
    """The summed tile counts, on each of grids, of a batch's kept activities inside box
    (None: all), as LocalBackend.count counts each (privacy cut out); and (index
    in kept, points used, points outside, points hidden) for each of them."""
    counts, stats, memory = [{} for _ in grids], [], available_memory()
    for k, p in wanted:
        full = batch[p]
        shown = count_activity(full, box, grids, mode, memory, counts, privacy)
        stats.append((k, shown.points, full.points - shown.points - shown.hidden,
                      shown.hidden))
    return counts, stats


def sum_counts(first, second, grids, memory=None):
    """Two (counts per grid, stats) summed with rasterize.add_counts, leaving both
    unchanged (Dask may hold them for a retry)."""
    (firsts, first_stats), (seconds, second_stats) = first, second
    memory = available_memory() if memory is None else memory
    totals = []
    for grid, counts, more in zip(grids, firsts, seconds):
        if len(more) > len(counts):
            counts, more = more, counts
        total = dict(counts)
        for key in total.keys() & more.keys():
            total[key] = total[key].copy()
        add_counts(total, more, grid, memory)
        totals.append(total)
    return totals, first_stats + second_stats

