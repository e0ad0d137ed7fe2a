"""Counting the kept activities on this machine, and what any backend's count gives.

A backend reads a build's inputs and counts its kept activities on its grids
(backends.py chooses one). `LocalBackend` reads with processes (reading.read_files,
the parse cache) and counts one activity at a time, its points loaded again from the
parse cache, the grids counted before coming from the counts cache (countcache.py).
Every backend returns a `Counted`; `record` writes it into the build's result, once.
"""

from typing import NamedTuple

import numpy as np

from . import countcache, tiles
from .activities import record_drawn
from .errors import InputError, ReadError
from .checks import available_memory
from .rasterize import count_activity
from .reading import load_points, read_files
from .report import BuildResult, FileEntry
from .sources import find_sources


class Counted(NamedTuple):
    """What a count found: the sparse counts on each grid, the points used and outside
    the box, one drawn flag per activity counted, the activities counted (the kept ones
    less the files that could not be loaded again), and privacy's (points hidden,
    activities touched)."""

    counts: list[dict]
    used: int
    outside: int
    drawn: np.ndarray
    activities: list
    hidden: tuple[int, int] = (0, 0)
    key: dict | None = None  # the counts cache's key (countcache.entry_key), if any


def record(result: BuildResult, counted: Counted) -> list[dict]:
    """Record in result what was drawn, what fell outside and what privacy hid; the
    counts. InputError when nothing is left to draw."""
    hidden = counted.hidden
    if result.privacy is not None:
        result.privacy["points_hidden"], result.privacy["activities_touched"] = map(int, hidden)
        result.points_hidden = int(hidden[0])
    if not counted.used:
        raise InputError("no trackpoint lies inside --bounds" if not hidden[0] else
                         "nothing to draw: every point inside --bounds is hidden by privacy")
    result.points_used += counted.used
    result.points_outside += counted.outside
    record_drawn(result, counted.activities, counted.drawn)
    return counted.counts


class LocalBackend:
    """Reading and counting here: files read by options.jobs processes through the parse
    cache, activities counted one at a time through the counts cache. The inputs are
    read once: a second read (one build per region) gives the first's files again."""

    name = "local"

    def __init__(self, options=None):
        self._read = None

    def __enter__(self) -> "LocalBackend":
        return self

    def __exit__(self, kind, error, trace) -> None:
        pass

    def read(self, options, warn, progress=None):
        """The sources of options.inputs and their parsed files, without points (with a
        parse cache they stay there until counted, one activity at a time)."""
        if self._read is None:
            sources = find_sources(options.inputs, options.pattern, on_warning=warn)
            parsed = read_files(sources, options.parse_cache, options.jobs, progress,
                                options.max_file_size, keep_points=False)
            self._read = sources, parsed
        return self._read

    def count(self, kept, source_of, box, grids, options, result, warn=None,
              privacy=None) -> Counted:
        """The sparse counts, on each of `grids`, of the kept activities' points inside
        box (None: all), summed one activity at a time (their points loaded from the
        parse cache one by one), so memory holds one activity's points and the tiles.
        With a parse cache, the grids counted before for the same activities come from
        the counts cache (countcache.py): only the others are counted. privacy: a
        privacy.Privacy cut out of every activity (None: nothing). A file that cannot be
        loaded again is recorded in result as skipped (and said); a counts cache hit as
        result.counts_cached."""
        memory = available_memory()
        key, found = None, {}
        if options.parse_cache is not None:
            try:
                key = countcache.entry_key(kept, source_of, box, options.mode, privacy)
            except OSError:  # a file gone since it was read: count without the counts cache
                key = None
        if key is not None:
            for i, grid in enumerate(grids):  # the output's grid first: TooBig before the rest
                cached = countcache.load(options.parse_cache, key, grid,
                                         memory if i == 0 else None)
                if cached is not None:
                    found[i] = cached
        if len(found) == len(grids):
            result.counts_cached = True
            first = found[0]
            return Counted([found[i].counts for i in range(len(grids))], first.used,
                           first.outside, first.drawn, kept, first.hidden, key)
        missing = [i for i in range(len(grids)) if i not in found]
        counted = _count(kept, [grids[i] for i in missing], box, source_of, options, memory,
                         result, warn, privacy)
        counts, used, outside, drawn, drawn_from, hidden = counted
        if len(drawn_from) < len(kept):  # files skipped: nothing kept, and no cached grid used
            if found:
                counts, used, outside, drawn, drawn_from, hidden = _count(
                    drawn_from, grids, box, source_of, options, memory, result, warn, privacy)
                missing = list(range(len(grids)))
        elif key is not None and used:
            countcache.store(options.parse_cache, key,
                             [(grids[i], countcache.Counted(grid_counts, used, outside, drawn,
                                                            hidden))
                              for i, grid_counts in zip(missing, counts)],
                             keep=[grids[i] for i in found])
        by_grid = {i: cached.counts for i, cached in found.items()}
        by_grid.update(zip(missing, counts))
        return Counted([by_grid[i] for i in range(len(grids))], used, outside, drawn,
                       drawn_from, hidden, key if len(drawn_from) == len(kept) else None)


def _count(activities, grids, box, source_of, options, memory, result, warn, privacy=None):
    """The activities counted on grids, one at a time: (counts per grid, points used,
    points outside, drawn flags, the activities counted, (points hidden, activities
    touched)). A file whose points cannot be loaded again is skipped (recorded in
    result, and said)."""
    counts, drawn, used, outside, counted = [{} for _ in grids], [], 0, 0, []
    hidden = touched = 0
    for activity in activities:
        try:
            full = load_points(activity, source_of[activity.name], options.parse_cache,
                               options.max_file_size)
        except ReadError as err:  # changed (or gone) since it was read
            result.skipped.append((activity.name, str(err)))
            result.entries.append(FileEntry.of(activity, "skipped", _reason(activity, err)))
            if warn is not None:
                warn(f"skipped {err}")
            continue
        shown = count_activity(full, box, grids, options.mode, memory, counts, privacy)
        drawn.append(bool(shown.points))
        counted.append(activity)
        used += shown.points
        outside += full.points - shown.points - shown.hidden
        hidden += shown.hidden
        touched += shown.hidden > 0
    # Kept as their cells from here on (a third of the dense blocks at street zoom).
    counts = [tiles.CellTiles.drained(np.uint32, grid_counts) for grid_counts in counts]
    return counts, used, outside, np.array(drawn, dtype=bool), counted, (hidden, touched)


def _reason(activity, err: ReadError) -> str:
    return str(err).removeprefix(f"{activity.name}: ")
