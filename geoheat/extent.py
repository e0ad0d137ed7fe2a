"""Which area a build covers, and at what zoom: the extent stage.

`--bounds` if given; else the area most activities visit (`auto`) or every point
(`all`); then the largest zoom whose image fits the size limit.
"""

import math
from collections import deque

import numpy as np

from . import tiles
from .errors import InputError
from .projection import lonlat_box_to_xy
from .tiles import Bbox

# Cells of the zoom-12 tile grid (about 10 km at the equator) group tracks into
# areas for the default extent: tracks are continuous, so one area's tracks share
# neighbouring cells, while a GPS glitch or a trip elsewhere does not.
CLUSTER_ZOOM = 12
# A cell fewer activities visit than this share of the busiest cell's is a rare
# stretch (the far end of a 200 km ride, a transfer): it does not make the extent.
RARE_SHARE = 0.05


def inside(xy: np.ndarray, bounds: Bbox) -> np.ndarray:
    """Mask of points inside bounds (edges included)."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= bounds.left) & (x <= bounds.right) & (y >= bounds.bottom) & (y <= bounds.top)


def points_bounds(xy: np.ndarray) -> Bbox:
    """The bounding box of points."""
    # Column by column: reducing an (n, 2) array along axis 0 is 20x slower in numpy.
    x, y = xy[:, 0], xy[:, 1]
    return Bbox(x.min(), y.min(), x.max(), y.max())


def select_extent(xy: np.ndarray, activity_offsets: np.ndarray, bounds: tuple | None,
                  extent: str) -> tuple[np.ndarray, Bbox]:
    """Which points to draw (a mask) and the area to cover (EPSG:3857).

    bounds: LAT_MIN LAT_MAX LON_MIN LON_MAX, or None for the `extent` rule ('auto':
    main_area; 'all': every point). activity_offsets: where each activity's points start.
    """
    if bounds is not None:
        box = lonlat_box_to_xy(*bounds)
    elif extent == "auto":
        box = main_area(xy, activity_offsets)
    else:
        return np.ones(len(xy), dtype=bool), points_bounds(xy)
    keep = inside(xy, box)
    if not keep.any():
        raise InputError("no trackpoint lies inside --bounds")
    return keep, box if bounds is not None else points_bounds(xy[keep])


def main_area(xy: np.ndarray, activity_offsets: np.ndarray, zoom: int = CLUSTER_ZOOM) -> Bbox:
    """The bounds of the area most activities visit: the robust default extent.

    Points are binned into tile-sized cells at `zoom`. A cell's weight is the number of
    activities that visit it (each activity counts once, however many points it has
    there), and cells visited by fewer than RARE_SHARE of the busiest cell's activities
    are dropped; the remaining cells form 8-connected areas, and the area that the most
    activities visit wins. So a home city with hundreds of short runs beats a long lake
    loop with many points, and the far ends of a few long rides or trips abroad do not
    stretch the image. Returns the bounds of the winning area's points.
    """
    col, row = tiles.world_pixels(xy, zoom)
    col = (col // tiles.TILE_SIZE).astype(np.int64)
    row = (row // tiles.TILE_SIZE).astype(np.int64)
    width = 2**zoom
    cells, cell_of_point = np.unique(row * width + col, return_inverse=True)
    cell_of_point = cell_of_point.ravel()
    activity_of_point = np.repeat(np.arange(len(activity_offsets) - 1),
                                  np.diff(activity_offsets))
    # (activity, cell) visits, each once.
    visits = np.unique(activity_of_point * len(cells) + cell_of_point)
    visit_activity, visit_cell = visits // len(cells), visits % len(cells)
    activities_in_cell = np.bincount(visit_cell, minlength=len(cells))
    busy = activities_in_cell >= max(1, math.ceil(RARE_SHARE * activities_in_cell.max()))
    label = np.full(len(cells), -1, dtype=np.int64)
    busy_cells = np.flatnonzero(busy)
    label[busy_cells] = _label_cells(list(zip((cells[busy_cells] // width).tolist(),
                                              (cells[busy_cells] % width).tolist())))
    # Activities per area: each activity once per area it visits.
    counted = label[visit_cell] >= 0
    area_visits = np.unique(visit_activity[counted] * len(cells) + label[visit_cell][counted])
    activities_in_area = np.bincount(area_visits % len(cells), minlength=len(cells))
    area_of_point = label[cell_of_point]
    points_in_area = np.bincount(area_of_point[area_of_point >= 0], minlength=len(cells))
    best = np.lexsort((points_in_area, activities_in_area))[-1]  # ties: more points
    return points_bounds(xy[area_of_point == best])


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
