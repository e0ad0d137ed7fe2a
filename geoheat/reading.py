"""Reading many activity files: through the parse cache, in parallel processes when asked.

parse_file is a pure function of one file (read, drop impossible positions,
project), so it can run in worker processes; results are put back in input
order, so any number of jobs gives the same result, bit for bit.
"""

import contextlib
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

from . import cache
from .errors import ReadError
from .formats import activity_type, read_fit, read_tcx
from .gpx import read_gpx_data
from .projection import project, valid_lonlat
from .rasterize import MIN_GAP_METRES, select_points
from .report import plural
from .sniff import SNIFF_BYTES, describe_content, sniff_format
from .source_bytes import MAX_ACTIVITY_BYTES, TOO_LARGE, Source, read_source
from .summary import ground_steps, summarize
from .times import EARLIEST_START, FIT_EARLIEST, plausible_start

READERS = {"gpx": read_gpx_data, "fit": read_fit, "tcx": read_tcx}
# parse_file's words for a reader that raised something other than GPXError: the file
# is skipped, and the fuzz harness counts it as a reader bug.
READER_FAILURE = "could not be decoded as"

Progress = Callable[..., Iterable]  # progress(iterable, label, length) -> iterable

# Without points (keep_points=False), a file's points stay in the parse cache and are
# loaded again to be counted: for a tiny file, that reload costs more than holding its
# points. Files of at most SMALL_POINTS points keep them, up to KEPT_POINTS in all
# (~24 bytes a point: ~100 MB), so memory stays bounded whatever the number of files.
SMALL_POINTS = 2_000
KEPT_POINTS = 4_000_000


class _Track:
    """An activity's segments as parse_file keeps them: positions only, projected, with
    each step's length on the ground, and whether its point times can matter."""

    def __init__(self, segments: list[np.ndarray]):
        self.segments = segments
        lonlat = np.concatenate(segments)
        lengths = [len(s) for s in segments]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.valid = valid_lonlat(lonlat)
        if not (self.valid.all() and all(lengths)):  # else select_points keeps them all
            lonlat, offsets = select_points(lonlat, offsets, self.valid)
        self.offsets = offsets
        self.xy = project(lonlat)
        self.steps = ground_steps(self.xy, self.offsets)
        # Times are read for one thing: rasterize.split_gaps, which breaks a line only
        # at a step longer than MIN_GAP_METRES on the ground. A track with none can lose
        # its times, whatever they are: its gaps are the same (drawn or cut to a box).
        self.needs_times = bool((self.steps > MIN_GAP_METRES).any())


def parse_file(source: Source | Path, max_bytes: int = MAX_ACTIVITY_BYTES, *,
               all_times: bool = False) -> cache.ParsedFile:
    """One activity file as projected track segments; a file that cannot be used says why.

    The format comes from the bytes (sniff.sniff_format), not the name. max_bytes
    caps what one file may take uncompressed. Point times are kept only where a gap
    may need them (see _Track; all_times=True keeps them all, for tests and checks:
    the output is the same), and a GPX file's are only read then.
    """
    source = source if isinstance(source, Source) else Source(Path(source))
    name, named = source.name, source.format
    empty_xy, no_offsets = np.empty((0, 2)), np.zeros(1, dtype=np.int64)
    size = 0  # the bytes read, uncompressed

    def failed(reason: str, fmt: str, **more) -> cache.ParsedFile:
        return cache.ParsedFile(name, empty_xy, no_offsets, more.pop("start", None), **more,
                                error=reason, format=fmt, size=size)

    try:
        data = read_source(source, max_bytes)
    except ReadError as err:
        size = max_bytes  # read under this limit: a lower one reads it again
        return failed(str(err), named)
    size = len(data)
    if source.member is None and not source.path.name.lower().endswith(".gz"):
        with contextlib.suppress(OSError):  # what read_source checks the limit on
            size = max(size, source.path.stat().st_size)
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        what = describe_content(data[:SNIFF_BYTES])
        if what == "an empty file":
            return failed(f"{name}: empty file", named)
        if what is not None and not (named == "gpx" and b"<gpx" in data[:SNIFF_BYTES]):
            return failed(f"{name}: not an activity file ({what})", named)
        fmt = named  # XML of no known root, say: its reader says what is wrong
    tracks: list[_Track] = []  # the reader's segments, projected once

    def times_wanted(segments: list[np.ndarray]) -> bool:
        tracks.append(_Track(segments))
        return all_times or tracks[-1].needs_times

    try:
        if fmt == "gpx":  # pairs point times (a scan of the whole file) only if wanted
            activity, note = READERS[fmt](data, name, times=times_wanted)
        else:
            activity, note = READERS[fmt](data, name)
    except ReadError as err:
        message = str(err)
        if fmt != named or not (source.member or source.path.name).lower().removesuffix(
                ".gz").endswith(f".{fmt}"):
            # Say what it really is: 'x.gpx: a FIT file: not an activity (...)'.
            message = f"{name}: a {fmt.upper()} file: {message.removeprefix(f'{name}: ')}"
        return failed(message, fmt)
    except Exception as err:  # noqa: BLE001
        # A reader tripped on something this odd file holds (the FIT SDK lets out
        # struct.error and IndexError): skip the file, never the run. The fuzz harness
        # counts these as reader bugs by READER_FAILURE.
        detail = str(err).splitlines()[0][:200] if str(err) else "no detail"
        return failed(f"{name}: {READER_FAILURE} {fmt.upper()} ({type(err).__name__}: "
                      f"{detail})", fmt)
    del data
    kind = activity_type(activity.sport)
    start, time_note = activity.start, activity.time_note
    if time_note is None:  # FIT's reader does not check
        start, time_note = plausible_start(
            start, earliest=FIT_EARLIEST if fmt == "fit" else EARLIEST_START)
    if not activity.segments:
        extra = [plural(n, what) for n, what in
                 ((activity.routes, "route"), (activity.waypoints, "waypoint")) if n]
        what = "track points" if fmt == "gpx" else "positions (an indoor activity?)"
        reason = f"{name}: no {what}" + (f" (only {', '.join(extra)})" if extra else "")
        if fmt == "fit" and note:  # it broke off (or was damaged) before any position
            reason = note
        return failed(reason, fmt, start=start, routes=activity.routes,
                      waypoints=activity.waypoints, activity_type=kind, time_note=time_note)
    track = next((t for t in tracks if t.segments is activity.segments), None)
    track = track or _Track(activity.segments)
    times = None
    # FIT and TCX readers (and GPX's streaming parse) give the times anyway; GPX read
    # them if times_wanted said so (or its start needed them): kept only if wanted.
    if (activity.times is not None and (all_times or track.needs_times)
            and sum(map(len, activity.times)) == len(track.valid)):
        times = np.concatenate(activity.times)[track.valid]
    xy, offsets = track.xy, track.offsets
    return cache.ParsedFile(name, xy, offsets, start,
                            activity.routes, activity.waypoints, int((~track.valid).sum()),
                            format=fmt, activity_type=kind, note=note, times=times,
                            time_note=time_note, summary=summarize(xy, offsets, track.steps),
                            size=size)


def parse_and_cache(source: Source, cache_dir: Path | None,
                    max_bytes: int = MAX_ACTIVITY_BYTES,
                    light: bool = False) -> tuple[cache.ParsedFile, bool]:
    """parse_file, then store the result in the parse cache (if there is one); and
    whether it is there now. light: once stored, return it without its points (see
    read_files' keep_points), so a worker process sends back a summary, not the points."""
    key = _identity(source) if cache_dir is not None else None
    parsed = parse_file(source, max_bytes)
    if (key is None or (parsed.error or "").endswith(TOO_LARGE)  # the limit may change
            or getattr(source, "unread", None)):  # not read: nothing to keep
        return parsed, False
    # The identity taken before reading: a file changed meanwhile is read again next time.
    stored = cache.store(cache_dir, source, parsed, key)
    small = parsed.points <= SMALL_POINTS  # read_files decides whether to hold them
    return (parsed.without_points() if light and stored and not small else parsed), stored


def _identity(source: Source) -> dict | None:
    """cache.identity, or None where the file cannot be stat'ed (it is not cached)."""
    try:
        return cache.identity(source)
    except OSError:
        return None


def _die_with_parent() -> None:
    """In a worker process: end when the build that started it ends, even by kill -9
    (else it would go on parsing for a dead parent). Linux only; elsewhere a no-op."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pool_context():
    """How to start worker processes: fork (fast: the modules are loaded already), but
    not while other threads run. A thread may hold an import lock (serve imports scipy
    in one); a worker forked then inherits it held by a thread that does not exist
    there, and waits for it forever. Then a fresh interpreter (forkserver, else spawn),
    which holds no lock."""
    import multiprocessing
    import threading

    if multiprocessing.get_start_method() != "fork" or threading.active_count() == 1:
        return None  # the default
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload([__name__])  # each worker forks with it loaded
    return context


def _stop_workers(pool) -> None:
    """End a pool's workers now: a worker stuck (on a lock, say) would make the pool's
    shutdown, and so Ctrl-C, wait forever."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, AttributeError, ValueError):
            pass  # ended meanwhile


def _await_manager(pool, seconds: float = 5.0) -> None:
    """Let a stopped pool's manager thread finish closing the pool (bounded): left
    running, it raced the interpreter's exit, which then wrote to the pipe it had just
    closed ('Exception ignored ... Bad file descriptor' after 'geoheat: interrupted')."""
    thread = getattr(pool, "_executor_manager_thread", None)
    if thread is not None:
        thread.join(seconds)


def parse_chunk(sources: Sequence[Source], cache_dir: Path | None, max_bytes: int,
                light: bool) -> list[tuple[cache.ParsedFile, bool]]:
    """parse_and_cache over a chunk of sources, in a worker process."""
    return [parse_and_cache(source, cache_dir, max_bytes, light) for source in sources]


def _in_order(pool, sources, chunk: int, cache_dir, max_bytes: int, light: bool):
    """parse_and_cache of every source on the pool, in order, chunk sources a task: all
    submitted now (the workers start here), the results as they come.

    Not pool.map: on Ctrl-C its results' generator cancels the futures itself, while
    the pool's manager thread, seeing the workers stopped, marks the same futures
    broken; CPython 3.11 then raises InvalidStateError in that thread, and its traceback
    followed 'geoheat: interrupted'. Here only the pool's shutdown cancels (in that
    thread)."""
    with _ctrl_c_held():
        futures = [pool.submit(parse_chunk, sources[at:at + chunk], cache_dir, max_bytes,
                               light) for at in range(0, len(sources), chunk)]

    def results():
        for future in futures:
            yield from future.result()

    return results()


@contextlib.contextmanager
def _ctrl_c_held():
    """Ctrl-C held back until the block ends, then handled as it would have been (a
    KeyboardInterrupt). A Ctrl-C while the pool forked its workers landed in the fork's
    own handlers, which swallow it ('Exception ignored in _releaseLock'): the build went
    on and replaced the outputs. Only the main thread can set a handler; elsewhere a
    no-op. Workers forked meanwhile keep the holding handler: the parent ends them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)  # Python's own raises KeyboardInterrupt
        elif caught and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def read_files(
    paths: Sequence[Source | Path],
    cache_dir: Path | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
    max_bytes: int = MAX_ACTIVITY_BYTES,
    keep_points: bool = True,
    prune: bool = True,
) -> list[cache.ParsedFile]:
    """Every source parsed, in order: from the cache where it holds the file, else read
    (in `jobs` processes when there are several files to read). max_bytes: what one file
    may take uncompressed. keep_points=False (with a cache): the points are left in the
    cache, each file's summary stands for them (load_points brings them back), so
    memory does not grow with the points of all files. prune=False: leave the cache's
    size alone (a batch of a build, which knows only its own files)."""
    paths = [p if isinstance(p, Source) else Source(Path(p)) for p in paths]
    light = not keep_points and cache_dir is not None
    budget = [KEPT_POINTS]  # points of small files held (see SMALL_POINTS)

    def kept(parsed: cache.ParsedFile | None, cached: bool = True) -> cache.ParsedFile | None:
        if not (light and cached and parsed is not None and parsed.loaded):
            return parsed
        if parsed.points <= SMALL_POINTS and parsed.points <= budget[0]:
            budget[0] -= parsed.points
            return parsed
        return parsed.without_points()

    def cached(source: Source) -> cache.ParsedFile | None:
        if source.unread:
            return None  # parse_file says why at once
        found = cache.load(cache_dir, source, points=not light)
        # Over the limit now (kept under a larger one): read, to be refused as without
        # a cache.
        return None if found is None or found.size > max_bytes else kept(found)

    results: list[cache.ParsedFile | None] = [
        cached(path) if cache_dir is not None else None for path in paths]
    misses = [i for i, parsed in enumerate(results) if parsed is None]
    to_read = [paths[i] for i in misses]
    workers = min(jobs, len(to_read))
    pool = None
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor  # multiprocessing: only when used

        pool = ProcessPoolExecutor(workers, mp_context=_pool_context(),
                                   initializer=_die_with_parent)
    finished = False
    try:
        if pool is not None:
            # Small chunks keep both processes busy to the end.
            parsed_iter = _in_order(pool, to_read, max(1, len(to_read) // (workers * 8)),
                                    cache_dir, max_bytes, light)
        else:
            parsed_iter = map(parse_and_cache, to_read, repeat(cache_dir), repeat(max_bytes),
                              repeat(light))
        if progress is not None and to_read:
            parsed_iter = progress(parsed_iter, "Reading activities", len(to_read))
        for i, (parsed, stored) in zip(misses, parsed_iter):
            results[i] = kept(parsed, stored)
        finished = True
    finally:
        if pool is not None:
            if not finished:  # Ctrl-C, or a failure: a worker may never end by itself
                _stop_workers(pool)
            pool.shutdown(wait=finished, cancel_futures=True)
            if not finished:
                _await_manager(pool)
    # Entries were added: the oldest may go. Not for a file or two added to thousands
    # (listing 7,000 entries takes ~60 ms): an export read again is all new files.
    if prune and cache_dir is not None and to_read and len(to_read) * 100 >= len(paths):
        cache.prune(cache_dir, keep=paths)
    # What activities.csv says beats what the file says; applied here, not cached, so an
    # edited activities.csv counts at once.
    return [with_index(parsed, source) for source, parsed in zip(paths, results)]


def with_index(parsed: cache.ParsedFile, source: Source) -> cache.ParsedFile:
    """A parsed file with what activities.csv says of it (its date and type) in place of
    what the file says; the file's own start kept as own_start where they differ."""
    start = source.date or parsed.start
    return parsed._replace(start=start,
                           activity_type=source.activity_type or parsed.activity_type,
                           own_start=parsed.start if parsed.start != start else None)



def load_points(parsed: cache.ParsedFile, source: Source, cache_dir: Path | None,
                max_bytes: int = MAX_ACTIVITY_BYTES) -> cache.ParsedFile:
    """A file's points, where read_files left them in the cache (else read again).
    ReadError if they are not the points its summary stands for: the entry was damaged
    and the file, read again, has changed (or no longer reads)."""
    if parsed.loaded:
        return parsed
    full = cache.load(cache_dir, source) if cache_dir is not None else None
    if full is None:  # damaged since its header was read: read again, and kept again
        full, _ = parse_and_cache(source, cache_dir, max_bytes)
        if full.error or full.points != parsed.points:
            why = full.error.removeprefix(f"{parsed.name}: ") if full.error else (
                f"changed while it was read ({full.points:,} points, not {parsed.points:,})")
            raise ReadError(f"{parsed.name}: {why}")
    return parsed._replace(xy=full.xy, offsets=full.offsets, times=full.times)
