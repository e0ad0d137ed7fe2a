"""Which area a build covers, and at what zoom: the extent stage.

`--bounds` if given; else the area most activities visit (`auto`) or every point
(`all`); then the largest zoom whose image fits the size limit.
"""

import math
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import tiles
from .projection import lonlat_box_to_xy
from .summary import CELLS_ACROSS, Summary
from .tiles import Bbox

# A cell fewer activities visit than this share of the busiest cell's is a rare
# stretch (the far end of a 200 km ride, a transfer): it does not make the extent.
RARE_SHARE = 0.05
# Fewer activities than this in the best area is no home area (a handful of files
# from anywhere): then the area with the most points wins instead.
MIN_HOME_ACTIVITIES = 3
# The regions named and drawn by --extent regions: areas of at least
# MIN_HOME_ACTIVITIES activities, the busiest first, at most this many.
MAX_REGIONS = 12


class Region(NamedTuple):
    """One area activities visit (EPSG:3857 bounds) and the activities there that no
    busier region has (indices into the summaries)."""

    bounds: Bbox
    activities: np.ndarray


def inside(xy: np.ndarray, bounds: Bbox) -> np.ndarray:
    """Mask of points inside bounds (edges included)."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= bounds.left) & (x <= bounds.right) & (y >= bounds.bottom) & (y <= bounds.top)


def points_bounds(xy: np.ndarray) -> Bbox:
    """The bounding box of points."""
    # Column by column: reducing an (n, 2) array along axis 0 is 20x slower in numpy.
    x, y = xy[:, 0], xy[:, 1]
    return Bbox(x.min(), y.min(), x.max(), y.max())


def choose_area(summaries: Sequence[Summary], bounds: tuple | None,
                extent: str) -> tuple[Bbox | None, Bbox]:
    """The box the points to draw must lie in (None: every point) and the area to cover
    (EPSG:3857), from the activities' summaries alone.

    bounds: LAT_MIN LAT_MAX LON_MIN LON_MAX, or None for the `extent` rule ('auto':
    main_area; 'all': every point).
    """
    if bounds is not None:
        box = lonlat_box_to_xy(*bounds)
        return box, box
    if extent == "auto":
        box = main_area(summaries)
        return box, box
    every = np.vstack([s.cell_bounds for s in summaries])
    return None, Bbox(every[:, 0].min(), every[:, 1].min(), every[:, 2].max(), every[:, 3].max())


def main_area(summaries: Sequence[Summary]) -> Bbox:
    """The bounds of the area most activities visit: the robust default extent.

    Tracks are binned into ~10 km cells (summary.CELL_ZOOM). A cell's weight is the number
    of activities that visit it (each activity counts once, however many points it has
    there), and cells visited by fewer than RARE_SHARE of the busiest cell's activities
    are dropped; the remaining cells form 8-connected areas, and the area that the most
    activities visit wins (ties: more points; with fewer than MIN_HOME_ACTIVITIES
    there, the area with the most points). So a home city with hundreds of short
    runs beats a long lake loop with many points, and the far ends of a few long rides
    or trips abroad do not stretch the image. Returns the bounds of the winning area's
    points.
    """
    visit_activity = np.repeat(np.arange(len(summaries)), [len(s.cells) for s in summaries])
    visit_key = np.concatenate([s.cells for s in summaries])
    visit_points = np.concatenate([s.cell_points for s in summaries])
    visit_bounds = np.vstack([s.cell_bounds for s in summaries])
    cells, visit_cell = np.unique(visit_key, return_inverse=True)
    visit_cell = visit_cell.ravel()
    activities_in_cell = np.bincount(visit_cell, minlength=len(cells))
    busy = activities_in_cell >= max(1, math.ceil(RARE_SHARE * activities_in_cell.max()))
    label = np.full(len(cells), -1, dtype=np.int64)
    busy_cells = np.flatnonzero(busy)
    label[busy_cells] = _label_cells(list(zip((cells[busy_cells] // CELLS_ACROSS).tolist(),
                                              (cells[busy_cells] % CELLS_ACROSS).tolist())))
    visit_area = label[visit_cell]
    counted = visit_area >= 0
    # Activities per area: each activity once per area it visits.
    area_visits = np.unique(visit_activity[counted] * len(cells) + visit_area[counted])
    activities_in_area = np.bincount(area_visits % len(cells), minlength=len(cells))
    points_in_area = np.bincount(visit_area[counted], weights=visit_points[counted],
                                 minlength=len(cells))
    best = np.lexsort((points_in_area, activities_in_area))[-1]
    if activities_in_area[best] < MIN_HOME_ACTIVITIES:
        best = np.lexsort((activities_in_area, points_in_area))[-1]
    chosen = visit_bounds[visit_area == best]
    return Bbox(chosen[:, 0].min(), chosen[:, 1].min(), chosen[:, 2].max(), chosen[:, 3].max())


def regions(summaries: Sequence[Summary], limit: int = MAX_REGIONS) -> list[Region]:
    """The areas the activities visit, as main_area finds them, busiest first: the main
    area, then the main area of the activities that do not touch it, and so on, while an
    area has MIN_HOME_ACTIVITIES activities (the first always counts). Each activity
    counts in the first region it touches; the rest (one-off trips) are in none."""
    found = []
    if not summaries:
        return found
    visit_activity = np.repeat(np.arange(len(summaries)), [len(s.cells) for s in summaries])
    visit_bounds = np.vstack([s.cell_bounds for s in summaries])
    left = np.arange(len(summaries))
    while len(left) and len(found) < limit:
        box = main_area([summaries[i] for i in left])
        touching = np.zeros(len(summaries), dtype=bool)
        touching[visit_activity[_overlaps(visit_bounds, box)]] = True
        touching = touching[left]
        if found and touching.sum() < MIN_HOME_ACTIVITIES:
            break
        found.append(Region(box, left[touching]))
        left = left[~touching]
    return found


def _overlaps(bounds: np.ndarray, box: Bbox) -> np.ndarray:
    """Which of the (n, 4) left, bottom, right, top boxes overlap box."""
    return ((bounds[:, 0] <= box.right) & (bounds[:, 2] >= box.left)
            & (bounds[:, 1] <= box.top) & (bounds[:, 3] >= box.bottom))


def _label_cells(cells: list[tuple[int, int]]) -> np.ndarray:
    """Cluster number of each cell: 8-connected neighbours share one (a breadth-first search;
    there are few cells, one per ~10 km square that has tracks)."""
    index = {cell: i for i, cell in enumerate(cells)}
    label = np.full(len(cells), -1, dtype=np.int64)
    for start in range(len(cells)):
        if label[start] >= 0:
            continue
        label[start] = start
        queue = deque([cells[start]])
        while queue:
            r, c = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    other = index.get((r + dr, c + dc))
                    if other is not None and label[other] < 0:
                        label[other] = start
                        queue.append(cells[other])
    return label


def choose_zoom(bounds: Bbox, max_size: int) -> int:
    """The largest zoom whose tile-aligned image of bounds fits max_size pixels a side."""
    for zoom in range(tiles.MAX_ZOOM, -1, -1):
        grid = tiles.grid_covering(bounds, zoom)
        if max(grid.width, grid.height) <= max_size:
            return zoom
    return 0
