"""The tile pyramid: every zoom below the output's computed from its own counts.

A level at zoom z' draws the same tracks on z''s own pixel grid (lines at that
zoom, or points summed there), scales them by the same rule and blurs them by the
same sigma in that zoom's pixels: a line drawn once is a line at every zoom, never
a colour or heat averaged away (averaging made MBTiles levels below the output fade,
and GDAL's averaging over absent tiles painted them opaque black).

The GeoTIFFs' overviews are these levels cropped to the output grid's extent
(`overview_window`); the MBTiles and PMTiles hold the levels' own tiles.
"""

import math
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

from . import tiles
from .heat import blur_tiles
from .tiles import Grid, TileKey

Sparse = dict[TileKey, np.ndarray]
Scaler = Callable[[Sparse, Grid], Sparse]  # counts on a grid -> heat


class Level(NamedTuple):
    """One zoom of the pyramid: its grid (whole tiles covering the output's extent),
    counts and heat (sparse)."""

    grid: Grid
    counts: Sparse
    heat: Sparse


class Window(NamedTuple):
    """Where a grid's extent lies in a lower level's grid, in that level's pixels."""

    row: int
    col: int
    height: int
    width: int


def level_grid(grid: Grid, zoom: int) -> Grid:
    """The whole tiles of `zoom` covering `grid`'s extent."""
    return tiles.grid_covering(tiles.grid_bounds(grid), zoom)


def default_min_zoom(grid: Grid) -> int:
    """The highest zoom (<= the grid's) at which the grid's extent lies in one tile, so a
    viewer zoomed out that far still sees all the heat; 0 at the least."""
    for zoom in range(grid.zoom, -1, -1):
        low = level_grid(grid, zoom)
        if low.width == low.height == tiles.TILE_SIZE:
            return zoom
    return 0


def overview_count(grid: Grid) -> int:
    """How many halvings until the grid fits one 256-pixel block: the COG's overviews
    (none beyond zoom 0)."""
    longest = max(grid.width, grid.height)
    return min(max(math.ceil(math.log2(longest / tiles.TILE_SIZE)), 0), grid.zoom)


def overview_window(grid: Grid, low: Grid) -> Window:
    """Where `grid`'s extent lies in the lower level `low`: the overview of factor
    2**(grid.zoom - low.zoom). Whole pixels up to a factor of 256, since the grid is
    whole tiles; beyond, rounded outwards."""
    factor = 2 ** (grid.zoom - low.zoom)
    row0, col0 = grid.row_off // factor, grid.col_off // factor
    height = -(-(grid.row_off + grid.height) // factor) - row0
    width = -(-(grid.col_off + grid.width) // factor) - col0
    return Window(row0 - low.row_off, col0 - low.col_off, height, width)


def zooms_below(grid: Grid, lowest: int) -> range:
    """The zooms of the levels below the grid's, from the grid's zoom - 1 down to lowest."""
    return range(grid.zoom - 1, max(lowest, 0) - 1, -1)


def levels(counted: Iterable[tuple[Grid, Sparse]], scale: Scaler,
           sigma: float, workers: int | None = None, heat: bool = True) -> Iterator[Level]:
    """The pyramid's levels from each level's own counts (on its grid, see level_grid;
    the build counts every level in its one pass over the activities), one at a time:
    scaled by `scale`, blurred by sigma pixels of that zoom (on `workers` threads, as
    blur_tiles takes them). heat=False: the counts alone (Level.heat None), for outputs
    of the counts (the counts GeoTIFF beside a heat GeoTIFF copied from the cache).

    Not made ahead on a thread while the caller writes the last one: tried, on a city
    at zoom 16 that cost ~0.2 s of CPU and ~20 MB of peak for at most the ~0.4 s of
    writing it could overlap, on cores the blur's threads already use."""
    for low, counts in counted:
        yield Level(low, counts, blur_tiles(scale(counts, low), sigma, low, workers=workers)
                    if heat else None)


def crop(sparse: Sparse, low: Grid, window: Window) -> Iterator[tuple[int, int, np.ndarray]]:
    """The parts of a level's tiles inside `window`: (row, col, block) in the window's own
    pixels, block clipped to it."""
    size = tiles.TILE_SIZE
    for key in sorted(sparse):  # one block at a time (CellTiles make each on reading)
        row, col = tiles.tile_window(key, low)
        r0, c0 = max(row, window.row), max(col, window.col)
        r1 = min(row + size, window.row + window.height)
        c1 = min(col + size, window.col + window.width)
        if r0 < r1 and c0 < c1:
            block = sparse[key]
            yield r0 - window.row, c0 - window.col, block[..., r0 - row:r1 - row,
                                                            c0 - col:c1 - col]
