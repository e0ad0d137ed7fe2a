"""Reading many activity files: through the parse cache, in parallel processes when asked.

parse_file is a pure function of one file (read, drop impossible positions,
project), so it can run in worker processes; results are put back in input
order, so any number of jobs gives the same result, bit for bit.
"""

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

from . import cache
from .errors import ReadError
from .formats import activity_type, read_fit, read_tcx
from .gpx import read_gpx_bytes
from .projection import project, valid_lonlat
from .rasterize import select_points
from .report import plural
from .sources import Source, read_source

READERS = {"gpx": lambda data, name: (read_gpx_bytes(data, name), None),
           "fit": read_fit, "tcx": read_tcx}

Progress = Callable[..., Iterable]  # progress(iterable, label, length) -> iterable


def parse_file(source: Source | Path) -> cache.ParsedFile:
    """One activity file as projected track segments; a file that cannot be used says why."""
    source = source if isinstance(source, Source) else Source(Path(source))
    name, fmt = source.name, source.format
    empty_xy, no_offsets = np.empty((0, 2)), np.zeros(1, dtype=np.int64)
    try:
        activity, note = READERS[fmt](read_source(source), name)
    except ReadError as err:
        return cache.ParsedFile(name, empty_xy, no_offsets, None, error=str(err), format=fmt)
    kind = activity_type(activity.sport)
    if not activity.segments:
        extra = [plural(n, what) for n, what in
                 ((activity.routes, "route"), (activity.waypoints, "waypoint")) if n]
        what = "track points" if fmt == "gpx" else "positions (an indoor activity?)"
        reason = f"{name}: no {what}" + (f" (only {', '.join(extra)})" if extra else "")
        return cache.ParsedFile(name, empty_xy, no_offsets, activity.start, activity.routes,
                                activity.waypoints, error=reason, format=fmt,
                                activity_type=kind)
    lonlat = np.concatenate(activity.segments)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in activity.segments])])
    valid = valid_lonlat(lonlat)
    lonlat, offsets = select_points(lonlat, offsets, valid)
    return cache.ParsedFile(name, project(lonlat), offsets, activity.start,
                            activity.routes, activity.waypoints, int((~valid).sum()),
                            format=fmt, activity_type=kind, note=note)


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

