"""Parsed files to the activities a build draws: filtered by year and type, each once.

The selected activities' points are concatenated into one `Tracks` (EPSG:3857
points cut into segments), and what was left out is counted in a BuildResult.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

from .cache import ParsedFile
from .formats import activity_type
from .report import BuildResult
from .tiles import EARTH_RADIUS

# Two activities starting this close in time and place are one activity twice (a .gpx
# and a .fit of one ride, or two exports unpacked into one folder).
DUPLICATE_SECONDS = 60
DUPLICATE_METRES = 200


class Tracks(NamedTuple):
    """The points a build draws: (n, 2) EPSG:3857, cut into segments at offsets."""

    xy: np.ndarray
    offsets: np.ndarray


def select_activities(
    parsed: Sequence[ParsedFile],
    years: Iterable[int] | None = None,
    on_warning: Callable[[str], None] | None = None,
    types: Iterable[str] | None = None,
) -> tuple[Tracks, BuildResult]:
    """Keep the activities of `years` and `types` (all if None), each once; count the rest."""
    warn = on_warning or (lambda message: None)
    result = BuildResult(files=len(parsed))
    years = set(years) if years else None
    types = {activity_type(t) for t in types} if types else None
    kept = []
    for activity in parsed:
        result.routes += activity.routes
        result.waypoints += activity.waypoints
        if activity.error:
            result.skipped.append((activity.name, activity.error))
            warn(f"skipped {activity.error}")
            continue
        if activity.note:
            result.notes.append(activity.note)
            warn(activity.note)
        result.files_read += 1
        result.points_read += activity.points + activity.invalid
        result.points_invalid += activity.invalid
        if years is not None:
            if activity.start is None:
                result.left_out["no time, so no year"] += 1
                continue
            if activity.start.year not in years:
                result.left_out["other years"] += 1
                continue
        if types is not None and activity.activity_type not in types:
            result.left_out["no type" if activity.activity_type is None else "other types"] += 1
            continue
        kept.append(activity)
    kept, result.duplicates = drop_duplicates(kept)
    for activity in kept:
        result.types[activity.activity_type or "unknown"] += 1
        result.formats[activity.format] += 1
    if not kept:
        return Tracks(np.empty((0, 2)), np.zeros(1, dtype=np.int64)), result
    xy = np.concatenate([a.xy for a in kept])
    starts = np.cumsum([0] + [a.points for a in kept[:-1]])
    offsets = np.concatenate([a.offsets[:-1] + s for a, s in zip(kept, starts)] + [[len(xy)]])
    return Tracks(xy, offsets.astype(np.int64)), result


def drop_duplicates(activities: Sequence[ParsedFile]) -> tuple[list[ParsedFile], int]:
    """The activities without repeats of one: same start (within a minute) and first
    point (within 200 m on the ground); of a pair, the one with more points stays."""
    timed = sorted((a for a in activities if a.start is not None and a.points),
                   key=lambda a: a.start.timestamp())
    dropped = set()
    for i, first in enumerate(timed):
        if id(first) in dropped:
            continue
        for second in timed[i + 1:]:
            if second.start.timestamp() - first.start.timestamp() > DUPLICATE_SECONDS:
                break
            if id(second) in dropped:
                continue
            gap = np.hypot(*(first.xy[0] - second.xy[0]))
            if gap / np.cosh(first.xy[0, 1] / EARTH_RADIUS) <= DUPLICATE_METRES:
                loser = second if second.points <= first.points else first
                dropped.add(id(loser))
                if loser is first:
                    break
    return [a for a in activities if id(a) not in dropped], len(dropped)
