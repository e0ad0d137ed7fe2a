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

Inputs may be fsspec URLs (`s3://bucket/runs/`, `gs://...`, `https://...`,
`file:///shared/runs`): listed on the client with fsspec, read on the workers, so
each worker needs the filesystem's package and credentials.

Dask and fsspec are the optional `dask` extra: imported here, inside functions, and
this module only when a build asks for a scheduler.
"""

import contextlib
import gc
import logging
import math
import posixpath
import re
import tempfile
import uuid
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import cache
from .activities import record_drawn
from .errors import InputError, ParameterError
from .options import DEFAULT_MAX_FILE_SIZE, NEEDS_DASK, available_memory, is_url
from .rasterize import add_counts, count_activity
from .reading import parse_file, read_files, with_index
from .source_bytes import Source, too_large as _too_large
from .sources import find_sources, tree_sources as _tree_sources

LOCAL = re.compile(r"local:(\d+)$")
RETRIES = 2  # a task that raises is tried this many times more before the build fails
# Files per reading task: enough to hide the per-task overhead (~1 ms of scheduling
# and a round trip), few enough that every worker gets several tasks to balance.
MAX_FILES_PER_TASK = 16
TASKS_PER_WORKER = 4
CONNECT_TIMEOUT = "30s"


class UrlSource(NamedTuple):
    """An activity file at an fsspec URL, with what an activities.csv beside it says."""

    url: str
    activity_type: str | None = None
    date: datetime | None = None

    @property
    def name(self) -> str:
        return self.url

    @property
    def member(self) -> None:
        return None


@contextlib.contextmanager
def _interrupts_ignored():
    """SIGINT ignored in this block, so processes started in it ignore it for life (an
    ignored signal stays ignored across exec, and Python then leaves it so). Blocking
    it instead would not do: the new processes start with no signal blocked."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _quiet_interrupted_gathers() -> None:
    """Leave out asyncio's 'Task exception was never retrieved' for the gathers an
    interrupt left behind (distributed's AllExit when the client closes): the CLI says
    'interrupted' in one line."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(getattr(f, "geoheat", False) for f in asyncio_log.filters):
        def keep(record):
            error = record.exc_info[1] if record.exc_info else None
            return type(error).__name__ != "AllExit"

        keep.geoheat = True
        asyncio_log.addFilter(keep)


def _ignore_interrupts():
    """A worker plugin: ignore SIGINT on the workers of a LocalCluster geoheat started
    (see Session). Made here, so that Dask is imported only with a scheduler."""
    from distributed import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        name = "geoheat-ignore-interrupts"

        def setup(self, worker=None):
            import signal
            import threading

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupts()


class Session:
    """A Dask client for one build: `local:N` starts (and `close` stops) a LocalCluster of
    N worker processes on 127.0.0.1; any other value is a scheduler's address."""

    def __init__(self, scheduler: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ParameterError(NEEDS_DASK) from None
        self.scheduler = scheduler
        self.cluster = None
        self.futures: list = []  # every future of the build, cancelled on interrupt
        self.bytes_to_client = 0  # Dask's size estimate of what the client gathered
        local = LOCAL.match(scheduler)
        try:
            if local:
                # The workers are in the terminal's process group, but Ctrl-C is the
                # client's to handle (cancel, close the cluster): they ignore it, from
                # birth, and when their nanny restarts one (the plugin). The client is
                # made in the same block: a Ctrl-C half-way through Client() left one
                # that hung the interpreter's exit, closing itself from __del__ over a
                # stopped event loop (1 exit in 20). The price: a Ctrl-C during the
                # second or so all this takes is lost.
                with warnings.catch_warnings(), _interrupts_ignored():
                    warnings.filterwarnings("ignore", "Port .* is already in use")  # takes another
                    self.cluster = LocalCluster(
                        n_workers=int(local.group(1)), threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None,
                        silence_logs=logging.CRITICAL)  # errors come back as exceptions
                    self.client = Client(self.cluster, set_as_default=False)
                    self.client.register_plugin(_ignore_interrupts())
            else:
                ask_scheduler(scheduler, CONNECT_TIMEOUT)
                failure = None
                try:
                    self.client = Client(scheduler, timeout=CONNECT_TIMEOUT,
                                         set_as_default=False)
                except Exception as err:  # noqa: BLE001 - it answered the probe, then not
                    failure = unreachable(scheduler, _first_line(err))
                if failure is not None:
                    # A Client whose start failed closes itself when collected, over its
                    # event loop: now, while the loop runs, not at exit (60 s then).
                    gc.collect()
                    raise failure
        except (OSError, TimeoutError) as err:  # the LocalCluster's
            self.close()
            raise unreachable(scheduler, _first_line(err)) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if isinstance(error, KeyboardInterrupt):
            _quiet_interrupted_gathers()
        if error is not None:
            self.cancel()
        self.close()

    @property
    def workers(self) -> int:
        """Tasks the cluster runs at once (its workers' threads), at least 1."""
        return max(sum(self.client.nthreads().values()), 1)

    def cancel(self) -> None:
        """Cancel every future of the build (Ctrl-C, an error): the scheduler drops them."""
        futures, self.futures = self.futures, []
        client = getattr(self, "client", None)
        if futures and client is not None and client.status == "running":
            try:
                client.cancel(futures, force=True)
            except Exception:  # noqa: BLE001 - a scheduler already gone has nothing to cancel
                pass

    def close(self) -> None:
        """Disconnect, and stop the cluster this session started."""
        client, self.client = getattr(self, "client", None), None
        cluster, self.cluster = self.cluster, None
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing what is gone
                    pass

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
        self._release(light)
        parsed = [p for batch in batches for p in batch]
        return sources, parsed

    # --- pass 2: count ---------------------------------------------------------------

    def count_activities(self, kept, source_of, box, grids, options, result,
                         privacy=None) -> list[dict]:
        """pipeline.count_activities on the workers: the kept activities counted on each
        of `grids` where their batch was read (source_of is not needed: the workers hold
        the points), the tile counts summed in a tree; records in result what was drawn
        and what fell outside."""
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
        self._release([f for b, f in enumerate(self._read) if b not in wanted])
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
        drawn = np.zeros(len(kept), dtype=bool)
        hidden = touched = 0
        for k, used, outside, hid in stats:
            drawn[k] = bool(used)
            result.points_used += used
            result.points_outside += outside
            hidden, touched = hidden + hid, touched + (hid > 0)
        if result.privacy is not None:
            result.privacy.update(points_hidden=hidden, activities_touched=touched)
            result.points_hidden = hidden
        if not result.points_used:
            raise InputError("no trackpoint lies inside --bounds")
        record_drawn(result, kept, drawn)
        return counts

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

    def _release(self, futures) -> None:
        gone = {f.key for f in futures}
        self.futures = [f for f in self.futures if f.key not in gone]
        for future in futures:
            future.release()


def unreachable(address: str, why: str) -> ParameterError:
    return ParameterError(f"cannot reach the Dask scheduler at {address} ({why})")


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def ask_scheduler(address: str, timeout: str | float = CONNECT_TIMEOUT) -> None:
    """Make sure a Dask scheduler answers at `address` within `timeout`, or raise
    ParameterError 'cannot reach the Dask scheduler at ADDRESS (why)'.

    Asked as a Dask client first asks (the comm handshake, then 'identity'), on an
    event loop of its own in a thread, so the whole exchange can be cut off: Dask's
    connect bounds the TCP connect but not the handshake after it (a peer that
    accepts and stays silent holds it for ever), bytes that are not Dask's raise
    whatever its reader makes of them (a 3 EiB allocation for an HTTP server's
    reply), and a Client whose start failed that way hangs the exit for 60 s."""
    import asyncio
    import threading

    from dask.utils import parse_timedelta
    from distributed.comm import CommClosedError, connect
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    seconds = parse_timedelta(timeout, "s")
    try:
        get_backend(parse_address(address)[0])
        connection = Security().get_connection_args("client")
    except (ValueError, ImportError) as err:
        raise unreachable(address, _first_line(err)) from None
    if address.startswith(("tls://", "wss://")) and connection.get("ssl_context") is None:
        raise unreachable(address, "TLS needs Dask's TLS settings: distributed.comm.tls."
                                   "ca-file, client.cert and client.key")

    async def identity():
        # TCP retries stop a little before the whole deadline, so that a port nothing
        # listens on says so rather than 'no handshake'.
        comm = await connect(address, timeout=seconds * 0.9, **connection)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome: list = []

    def run():
        try:
            outcome.append(asyncio.run(asyncio.wait_for(identity(), seconds)))
        except BaseException as err:  # noqa: BLE001 - judged below, in the caller's thread
            outcome.append(err)

    asker = threading.Thread(target=run, name="geoheat-ask-scheduler", daemon=True)
    asker.start()
    asker.join(seconds + 5)  # the loop's own deadline ends it first
    answer = outcome[0] if outcome else TimeoutError()
    if isinstance(answer, dict) and answer.get("type") == "Scheduler":
        return
    if isinstance(answer, (TimeoutError, asyncio.TimeoutError)):
        why = (f"it accepted the connection but gave no Dask handshake within {seconds:g} s: "
               "not a Dask scheduler?")
    elif isinstance(answer, CommClosedError):
        why = "it closed the connection without a Dask handshake: not a Dask scheduler?"
    elif isinstance(answer, OSError):
        why = _first_line(answer)  # 'Timed out trying to connect to ... after 27 s'
    elif isinstance(answer, dict) and isinstance(answer.get("type"), str):
        why = f"that is a Dask {answer['type']}, not the scheduler"
    elif isinstance(answer, BaseException) and not isinstance(answer, Exception):
        raise answer  # KeyboardInterrupt, SystemExit: not the peer's doing
    else:
        kind = type(answer).__name__
        why = f"it answers, but not as a Dask scheduler does ({kind})"
    raise unreachable(address, why)


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
    (None: all), as pipeline.count_activities counts each (privacy cut out); and (index
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


# --- fsspec URLs -----------------------------------------------------------------------

def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise ParameterError(NEEDS_DASK.replace("--scheduler", "a URL input")) from None
    return fsspec


def find_all_sources(inputs: Iterable, pattern: str | None, warn) -> list:
    """sources.find_sources for local inputs, find_url_sources for URLs, in input order;
    each file once. InputError when nothing matches."""
    found, local = {}, []

    def flush():
        if local:
            for source in find_sources(local, pattern, on_warning=warn):
                found.setdefault(source.name, source)
            local.clear()

    for item in inputs:
        if is_url(item):
            flush()
            for source in find_url_sources(str(item), pattern, warn):
                found.setdefault(source.name, source)
        else:
            local.append(item)
    flush()
    return list(found.values())


def find_url_sources(url: str, pattern: str | None = None, warn=None) -> list[UrlSource]:
    """The activity files at an fsspec URL: a file, or every file under a prefix
    (sources' rules: hidden files left out, pattern, an activities.csv's listed files)."""
    fsspec = _fsspec()
    warn = warn or (lambda message: None)
    try:
        fs, root = fsspec.core.url_to_fs(url)
        if fs.isdir(root):
            base = root.rstrip("/")
            files = [f[len(base) + 1:] for f in fs.find(base) if f.startswith(base + "/")]
            kind = "folder"
        elif fs.isfile(root):
            files, kind = None, "file"
        else:
            raise InputError(f"{url}: no such file or folder")
    except InputError:
        raise
    except (ImportError, ValueError) as err:
        raise InputError(f"{url}: cannot be read ({err})") from None
    except Exception as err:  # noqa: BLE001 - filesystems raise many kinds
        raise InputError(f"{url}: cannot be listed ({type(err).__name__}: {err})") from None
    if kind == "file":
        if url.lower().endswith(".zip"):
            raise InputError(f"{url}: a zip over a URL is not read; unpack the export and give "
                             "its folder")
        return [UrlSource(url)]
    prefix = url.rstrip("/")

    def read_index(relative: str) -> bytes:
        with fs.open(f"{base}/{relative}", "rb") as f:
            return f.read()

    sources = _tree_sources(files, read_index,
                            lambda rel, kind, date: UrlSource(f"{prefix}/{rel}", kind, date),
                            prefix, pattern, warn)
    if not sources:
        wanted = repr(pattern) if pattern else "any .gpx, .fit or .tcx file"
        raise InputError(f"{url}: no file matches {wanted}")
    return sources


def parse_url(url: str, max_bytes: int = DEFAULT_MAX_FILE_SIZE) -> cache.ParsedFile:
    """reading.parse_file of the file at an fsspec URL: fetched (at most max_bytes) into
    a private temporary folder under its own name, parsed there, named by its URL."""
    fsspec = _fsspec()
    base = posixpath.basename(url.rstrip("/")) or "activity.gpx"
    named = Source(Path(base)).format
    compressed = base.lower().endswith(".gz")

    def failed(reason: str) -> cache.ParsedFile:
        return cache.ParsedFile(url, np.empty((0, 2)), np.zeros(1, dtype=np.int64), None,
                                error=reason, format=named)

    try:
        with fsspec.open(url, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return failed(f"{url}: cannot read (No such file or directory)")
    except Exception as err:  # noqa: BLE001 - filesystems raise many kinds
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        return failed(f"{url}: cannot read ({detail})")
    if len(data) > max_bytes:
        # Compressed data this large inflates beyond the limit too (deflate never grows
        # data by more than 0.1%).
        return failed(str(_too_large(url, max_bytes, compressed)))
    with tempfile.TemporaryDirectory(prefix="geoheat-url-") as folder:
        path = Path(folder) / base
        path.write_bytes(data)
        del data
        parsed = parse_file(Source(path), max_bytes)
    here = str(path)

    def renamed(text):
        return text.replace(here, url) if isinstance(text, str) else text

    return parsed._replace(name=url, error=renamed(parsed.error), note=renamed(parsed.note),
                           time_note=renamed(parsed.time_note))
