"""What a page's view of `geoheat serve` draws: the View (which activities, how heat is
scaled) and its Selection (the points a build with those filters would draw, as the
build's select and extent stages choose and cut them, with the build's privacy), indexed
by the points' tiles so a tile's count reads only the points that can reach it.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .activities import select_activities
from .cache import ParsedFile
from .extent import choose_area
from .level import Plan, plan_of
from .options import BuildOptions
from .rasterize import cut_to_box, select_points
from .tiles import Bbox

# The points are indexed by their tile at this zoom (~300 m at 30 degrees): a tile's
# count reads the points of its cells and the cells next to them.
INDEX_ZOOM = 17


class View(NamedTuple):
    """What the page can change without re-reading: which activities, and how heat is
    scaled. types/years None: all."""

    types: tuple[str, ...] | None
    years: tuple[int, ...] | None
    scaling: str
    normalize: str = "global"


class Selection(NamedTuple):
    """The points a view draws (as a build with its filters would), with the index."""

    xy: np.ndarray
    segments: np.ndarray  # segment offsets into xy, split at gaps (lines mode)
    area: Bbox | None  # the extent (None: nothing to draw)
    activity_offsets: np.ndarray  # activity i's points: xy[a[i]:a[i + 1]]
    boxes: np.ndarray  # (activities, 4) left, bottom, right, top of each activity's points
    plan: Plan | None  # what a level's sample size is estimated from
    cells: np.ndarray  # the points' INDEX_ZOOM tiles (y * 2**INDEX_ZOOM + x), sorted
    order: np.ndarray  # the points in that order
    long_steps: np.ndarray  # both ends of each step spanning more than a cell's neighbours
    ends: np.ndarray | None = None  # with hidden ends: privacy.end_distances of each point


EMPTY_SELECTION = Selection(np.empty((0, 2)), np.zeros(1, np.int64), None,
                            np.zeros(1, np.int64), np.empty((0, 4)), None,
                            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


def select_view(parsed: Sequence[ParsedFile], options: BuildOptions, privacy,
                view: View) -> Selection:
    """The points the view draws: the build's select and extent stages (privacy: the
    build's privacy.Privacy, or None)."""
    kept, _ = select_activities(parsed, view.years, view.types,
                                options.keep_duplicates)
    if not kept:
        return EMPTY_SELECTION
    box, area = choose_area([a.summary for a in kept], options.bounds, options.extent)
    # Each activity's points inside the box, as the build cuts them (count_activity).
    parts, boxes = [], np.full((len(kept), 4), np.nan)
    ends = []
    for i, activity in enumerate(kept):
        xy, segments, activity_ends = _cut(activity, box, options.mode, privacy)
        parts.append((xy, segments))
        if activity_ends is not None:
            ends.append(activity_ends)
        if len(xy):
            boxes[i] = xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()
    if not any(len(xy) for xy, _ in parts):  # no point inside --bounds
        return EMPTY_SELECTION
    starts = np.cumsum([0] + [len(xy) for xy, _ in parts])
    segments = np.concatenate([o[:-1] + s for (_, o), s in zip(parts, starts)]
                              + [[starts[-1]]]).astype(np.int64)
    xy = np.concatenate([p[0] for p in parts])
    return Selection(xy, segments, area, starts.astype(np.int64), boxes,
                     plan_of([a.summary for a in kept], area), *point_index(xy, segments),
                     np.concatenate(ends) if ends else None)


def points_near(chosen: Selection, zoom: int, region, box: Bbox):
    """The points of the steps that can reach the tiles region (x0, y0, x1, y1 at
    zoom; box: its bounds), with their segment offsets: the points in and next to
    the region's cells of the point index, and the long steps' ends; and their
    privacy.end_distances, as points_crossing)."""
    x0, y0, x1, y1 = region
    if zoom >= INDEX_ZOOM:
        shift = zoom - INDEX_ZOOM
        c0, r0, c1, r1 = x0 >> shift, y0 >> shift, (x1 - 1) >> shift, (y1 - 1) >> shift
    else:
        shift = INDEX_ZOOM - zoom
        c0, r0, c1, r1 = x0 << shift, y0 << shift, (x1 << shift) - 1, (y1 << shift) - 1
    c0, r0, c1, r1 = c0 - 1, r0 - 1, c1 + 1, r1 + 1  # a step reaches one cell over
    if r1 - r0 > 4096:  # a low zoom: the activities' boxes are index enough
        return points_crossing(chosen, box)
    across = 2**INDEX_ZOOM
    rows = np.arange(max(r0, 0), min(r1, across - 1) + 1, dtype=np.int64) * across
    lo = np.searchsorted(chosen.cells, rows + max(c0, 0))
    hi = np.searchsorted(chosen.cells, rows + min(c1, across - 1), side="right")
    found = [chosen.order[a:b] for a, b in zip(lo, hi) if b > a]
    n = len(chosen.xy)
    take = np.zeros(n, dtype=bool)
    take[chosen.long_steps] = True
    if found:
        near = np.concatenate(found)
        take[near] = True
        take[np.maximum(near - 1, 0)] = True  # the steps into and out of the region
        take[np.minimum(near + 1, n - 1)] = True
    if take.all():
        return chosen.xy, chosen.segments, chosen.ends
    return _taken(chosen, take)


def points_crossing(chosen: Selection, box: Bbox):
    """The points of the activities whose bounding box meets box (with their segment
    offsets and privacy.end_distances): what a count over box needs, no more."""
    boxes = chosen.boxes
    meets = ((boxes[:, 0] <= box.right) & (boxes[:, 2] >= box.left)
             & (boxes[:, 1] <= box.top) & (boxes[:, 3] >= box.bottom))
    if meets.all():
        return chosen.xy, chosen.segments, chosen.ends
    starts, ends = chosen.activity_offsets[:-1][meets], chosen.activity_offsets[1:][meets]
    take = np.zeros(len(chosen.xy), dtype=bool)
    for a, b in zip(starts, ends):
        take[a:b] = True
    return _taken(chosen, take)


def _cut(activity: ParsedFile, box, mode: str, privacy):
    """An activity's points inside box as rasterize.count_activity draws them (None box:
    all): (the points, their segment offsets, split at gaps in lines mode; each point's
    privacy.end_distances where lines hide their ends, else None). Points mode drops the
    points privacy hides; lines keep them (the samples are hidden: privacy.SampleFilter)."""
    if privacy is None or not privacy.active:
        return (*cut_to_box(activity, box, mode), None)
    from .extent import inside
    from .privacy import end_distances, hidden_points
    from .rasterize import split_gaps

    xy, segments = activity.xy, activity.offsets
    keep = inside(xy, box) if box is not None else np.ones(len(xy), dtype=bool)
    if mode == "lines":  # split on the whole track, as the build (its ends are the drawn ones)
        segments = split_gaps(xy, segments, activity.times)
    ends = end_distances(xy, segments) if privacy.hide_ends > 0 else None
    if mode != "lines":
        keep = keep & ~hidden_points(xy, ends, privacy)
        ends = None
    part, segments = select_points(xy, segments, keep)
    return part, segments, None if ends is None else ends[keep]


def _taken(chosen: Selection, take: np.ndarray):
    """The selection's points marked by take: (points, segment offsets, end distances)."""
    xy, segments = select_points(chosen.xy, chosen.segments, take)
    return xy, segments, None if chosen.ends is None else chosen.ends[take]


def point_index(xy: np.ndarray, segments: np.ndarray):
    """The points' INDEX_ZOOM tiles, sorted, the points in that order, and the ends of the
    steps longer than a cell's neighbours (which a region's cells would miss)."""
    from .level import point_tiles

    tx, ty = point_tiles(xy, INDEX_ZOOM)
    cells = ty * 2**INDEX_ZOOM + tx
    order = np.argsort(cells, kind="stable")
    last = np.zeros(len(xy), dtype=bool)
    last[np.asarray(segments[1:]) - 1] = True
    far = ~last[:-1] & ((np.abs(np.diff(tx)) > 1) | (np.abs(np.diff(ty)) > 1))
    ends = np.flatnonzero(far)
    return cells[order], order, np.union1d(ends, ends + 1).astype(np.int64)


def selection_bytes(chosen: Selection) -> int:
    """The memory a selection holds (its arrays), for a cache bounded in bytes."""
    return sum(part.nbytes for part in chosen if isinstance(part, np.ndarray)) + 512
