"""Which area a build covers, and at what zoom: the extent stage.

`--bounds` if given; else the densest connected area of the tracks (`auto`) or
every point (`all`); then the largest zoom whose image fits the size limit.
"""

from collections import deque

import numpy as np

from . import tiles
from .errors import InputError
from .projection import lonlat_box_to_xy
from .tiles import Bbox

# Cells of the zoom-12 tile grid (about 10 km at the equator) group points into
# clusters for the default extent: tracks are continuous, so one area's tracks
# share neighbouring cells, while a GPS glitch or a trip elsewhere does not.
CLUSTER_ZOOM = 12


def inside(xy: np.ndarray, bounds: Bbox) -> np.ndarray:
    """Mask of points inside bounds (edges included)."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= bounds.left) & (x <= bounds.right) & (y >= bounds.bottom) & (y <= bounds.top)


def points_bounds(xy: np.ndarray) -> Bbox:
    """The bounding box of points."""
    # Column by column: reducing an (n, 2) array along axis 0 is 20x slower in numpy.
    x, y = xy[:, 0], xy[:, 1]
    return Bbox(x.min(), y.min(), x.max(), y.max())


def select_extent(xy: np.ndarray, bounds: tuple | None, extent: str) -> tuple[np.ndarray, Bbox]:
    """Which points to draw (a mask) and the area to cover (EPSG:3857).

    bounds: LAT_MIN LAT_MAX LON_MIN LON_MAX, or None for the `extent` rule.
    """
    if bounds is not None:
        box = lonlat_box_to_xy(*bounds)
        keep = inside(xy, box)
        if not keep.any():
            raise InputError("no trackpoint lies inside --bounds")
        return keep, box
    keep = main_cluster(xy) if extent == "auto" else np.ones(len(xy), dtype=bool)
    return keep, points_bounds(xy[keep])


def main_cluster(xy: np.ndarray, zoom: int = CLUSTER_ZOOM) -> np.ndarray:
    """Mask of the points in the densest connected area: the robust default extent.

    Points are binned into tile-sized cells at `zoom`; 8-connected occupied cells form
    clusters; the cluster holding the most points wins. Stray points and far-away
    trips fall outside it.
    """
    col, row = tiles.world_pixels(xy, zoom)
    col = (col // tiles.TILE_SIZE).astype(np.int64)
    row = (row // tiles.TILE_SIZE).astype(np.int64)
    # One integer per cell: a 1-D unique is 30x faster than np.unique(axis=0) on pairs.
    width = int(col.max()) + 1
    keys, cell_of_point, points_in_cell = np.unique(
        row * width + col, return_inverse=True, return_counts=True)
    cells = list(zip((keys // width).tolist(), (keys % width).tolist()))
    label = _label_cells(cells)
    points_in_label = np.bincount(label, weights=points_in_cell)
    return label[cell_of_point.ravel()] == points_in_label.argmax()


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
