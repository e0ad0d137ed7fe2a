"""Reading many activity files: through the parse cache, in parallel processes when asked.

parse_file is a pure function of one file (read, drop impossible positions,
project), so it can run in worker processes; results are put back in input
order, so any number of jobs gives the same result, bit for bit.
"""

import os
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

from . import cache, heat
from .errors import GPXError
from .formats import activity_type, read_fit, read_tcx
from .gpx import read_gpx_bytes
from .sources import Source, read_source

READERS = {"gpx": lambda data, name: (read_gpx_bytes(data, name), None),
           "fit": read_fit, "tcx": read_tcx}

Progress = Callable[..., Iterable]  # progress(iterable, label, length) -> iterable


def plural(n: int, noun: str) -> str:
    """'1 route', '2 routes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def parse_file(source: Source | Path, *, max_bytes: int | None = None,
               drop_no_fix: bool = False, times: bool = True) -> cache.ParsedFile:
    """One activity file as projected track segments; a file that cannot be used says why.

    The format comes from the bytes (sources.sniff_format), not the name. max_bytes
    caps what one file may take uncompressed (None: sources.MAX_ACTIVITY_BYTES).
    times: pair GPX points with their times (ParsedFile.times, once the middle adds the
    field; ~0.2 s per 500,000 points); False where nothing uses them (points mode).
    drop_no_fix: positions at exactly 0,0 (a GPS before its first fix) are dropped and
    counted as invalid (off by default only because tests/test_build.py still draws a
    0,0 glitch; the middle flips it).
    """
    # Imported here so this edit stays inside parse_file (other branches edit the module).
    from .gpx import EARLIEST_START, FIT_EARLIEST, plausible_start, read_gpx_data
    from .sources import (MAX_ACTIVITY_BYTES, READER_FAILURE, SNIFF_BYTES, describe_content,
                          sniff_format)

    source = source if isinstance(source, Source) else Source(Path(source))
    name, named = source.name, source.format
    empty_xy, no_offsets = np.empty((0, 2)), np.zeros(1, dtype=np.int64)
    # Fields the middle may not have added to ParsedFile yet: set only where they exist.
    extra_fields = set(cache.ParsedFile._fields)

    def failed(reason: str, fmt: str, **more) -> cache.ParsedFile:
        return cache.ParsedFile(name, empty_xy, no_offsets, more.pop("start", None), **more,
                                error=reason, format=fmt)

    try:
        data = read_source(source, max_bytes or MAX_ACTIVITY_BYTES)
    except GPXError as err:
        return failed(str(err), named)
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        what = describe_content(data[:SNIFF_BYTES])
        if what == "an empty file":
            return failed(f"{name}: empty file", named)
        if what is not None and not (named == "gpx" and b"<gpx" in data[:SNIFF_BYTES]):
            return failed(f"{name}: not an activity file ({what})", named)
        fmt = named  # XML of no known root, say: its reader says what is wrong
    if fmt == "gpx":
        def reader(data, name):
            return read_gpx_data(data, name, times=times and "times" in extra_fields)
    else:
        reader = READERS[fmt]
    try:
        activity, note = reader(data, name)
    except GPXError as err:
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
    start, time_note = activity.start, getattr(activity, "time_note", None)
    if time_note is None:  # FIT's reader does not check
        start, time_note = plausible_start(
            start, earliest=FIT_EARLIEST if fmt == "fit" else EARLIEST_START)
    more = {"time_note": time_note} if "time_note" in extra_fields else {}
    if not activity.segments:
        extra = [plural(n, what) for n, what in
                 ((activity.routes, "route"), (activity.waypoints, "waypoint")) if n]
        what = "track points" if fmt == "gpx" else "positions (an indoor activity?)"
        reason = f"{name}: no {what}" + (f" (only {', '.join(extra)})" if extra else "")
        return failed(reason, fmt, start=start, routes=activity.routes,
                      waypoints=activity.waypoints, activity_type=kind, **more)
    lonlat = np.concatenate(activity.segments)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in activity.segments])])
    valid = heat.valid_lonlat(lonlat)
    if drop_no_fix:
        valid &= ~((lonlat[:, 0] == 0) & (lonlat[:, 1] == 0))  # 0,0: a GPS with no fix yet
    if "times" in extra_fields:
        point_times = getattr(activity, "times", None)
        if point_times is not None and sum(map(len, point_times)) == len(lonlat):
            more["times"] = np.concatenate(point_times)[valid]
    lonlat, offsets = heat.select_points(lonlat, offsets, valid)
    return cache.ParsedFile(name, heat.project(lonlat), offsets, start,
                            activity.routes, activity.waypoints, int((~valid).sum()),
                            format=fmt, activity_type=kind, note=note, **more)


def parse_and_cache(source: Source, cache_dir: Path | None) -> cache.ParsedFile:
    """parse_file, then store the result in the parse cache (if there is one)."""
    parsed = parse_file(source)
    if cache_dir is not None:
        cache.store(cache_dir, source, parsed)
    return parsed


def read_files(
    paths: Sequence[Source | Path],
    cache_dir: Path | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[cache.ParsedFile]:
    """Every source parsed, in order: from the cache where it holds the file, else read
    (in `jobs` processes when there are several files to read)."""
    paths = [p if isinstance(p, Source) else Source(Path(p)) for p in paths]
    results: list[cache.ParsedFile | None] = [
        cache.load(cache_dir, path) if cache_dir is not None else None for path in paths]
    misses = [i for i, parsed in enumerate(results) if parsed is None]
    to_read = [paths[i] for i in misses]
    workers = min(jobs, len(to_read))
    pool = None
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor  # multiprocessing: only when used

        pool = ProcessPoolExecutor(workers)
    try:
        if pool is not None:
            # Small chunks keep both processes busy to the end; order is kept by map.
            parsed_iter = pool.map(parse_and_cache, to_read, repeat(cache_dir),
                                   chunksize=max(1, len(to_read) // (workers * 8)))
        else:
            parsed_iter = map(parse_and_cache, to_read, repeat(cache_dir))
        if progress is not None and to_read:
            parsed_iter = progress(parsed_iter, "Reading activities", len(to_read))
        for i, parsed in zip(misses, parsed_iter):
            results[i] = parsed
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    # What activities.csv says beats what the file says; applied here, not cached, so an
    # edited activities.csv counts at once.
    return [parsed._replace(start=source.date or parsed.start,
                            activity_type=source.activity_type or parsed.activity_type)
            for source, parsed in zip(paths, results)]


def default_jobs() -> int:
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
