"""Local contrast: each pixel's heat is its rank among the counts of its neighbourhood,
a square of fixed ground size (NEIGHBOURHOOD_M, ~2 km) the same at every zoom.

The global rank places a pixel among all pixels of the map, so a quiet street beside a
busy corridor stays dim. Here (adaptive histogram equalisation, as CLAHE does for
images) the map is cut into square blocks a third of the neighbourhood wide (in
pixels of the level's zoom, so a block is the same ground at every zoom), each block
gets the distribution of the non-zero counts in the 3 x 3 blocks around it, and each
pixel's rank blends the ranks in the four blocks whose centres surround it,
bilinearly by distance: the blend changes by the same step across a block edge as
inside a block, so no edge shows. Ranks need no contrast limit (CLAHE's clip guards
against amplifying noise in flat regions; a count has none). The rank is the mid-rank
drawn from heat.LOW to 1, as the global scale does: a neighbourhood with one track
gets the middle colour on it.
"""

import math

import numpy as np

from . import tiles
from .heat import LOW
from .tiles import Grid, TileKey

# The ground across a pixel's neighbourhood, in metres: 3 x 3 blocks of a third of it.
NEIGHBOURHOOD_M = 2000.0

Sparse = dict[TileKey, np.ndarray]


def block_pixels(grid: Grid) -> int:
    """A block's side in the grid's pixels: a third of NEIGHBOURHOOD_M on the ground at
    the grid's middle latitude (Mercator stretches ground by cosh(y / R)); at least 1."""
    bounds = tiles.grid_bounds(grid)
    stretch = math.cosh((bounds.bottom + bounds.top) / 2 / tiles.EARTH_RADIUS)
    ground_per_pixel = tiles.resolution(grid.zoom) / stretch
    return max(1, round(NEIGHBOURHOOD_M / 3 / ground_per_pixel))


def _lit_pixels(counts: Sparse):
    """Every non-zero pixel of the tiles: (world row, world col, count, tile, row, col)."""
    size = tiles.TILE_SIZE
    parts = []
    for (x, y), block in counts.items():
        rows, cols = np.nonzero(block)
        if len(rows):
            parts.append((rows + y * size, cols + x * size, block[rows, cols],
                          np.full(len(rows), len(parts)), rows, cols, (x, y)))
    return parts


def local_scale_tiles(counts: Sparse, grid: Grid) -> Sparse:
    """Each non-zero pixel's heat in [LOW, 1): its mid-rank among the non-zero counts of
    its neighbourhood (NEIGHBOURHOOD_M across on the ground), blended bilinearly between
    the four nearest blocks' neighbourhoods. Zero stays zero. Deterministic, and sparse:
    only tiles with counts are made."""
    out = {key: np.zeros(block.shape, dtype=np.float32) for key, block in counts.items()}
    parts = _lit_pixels(counts)
    if not parts:
        return out
    side = block_pixels(grid)
    row = np.concatenate([p[0] for p in parts]).astype(np.int64)
    col = np.concatenate([p[1] for p in parts]).astype(np.int64)
    distinct, value = np.unique(np.concatenate([p[2] for p in parts]), return_inverse=True)
    nvalues = len(distinct)
    bx, by = col // side, row // side
    x0, y0 = int(bx.min()) - 2, int(by.min()) - 2  # blocks from here, with room around
    width = int(bx.max()) - x0 + 3
    # Each block's histogram: (block, value) pairs and how many pixels have them.
    pairs, freq = np.unique(((by - y0) * width + (bx - x0)) * nvalues + value,
                            return_counts=True)
    pair_block, pair_value = pairs // nvalues, pairs % nvalues
    # Each block's neighbourhood histogram: the pairs of the 3 x 3 blocks around it summed.
    shifted = np.concatenate([pair_block + dy * width + dx
                              for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    keys, where = np.unique(shifted * nvalues + np.tile(pair_value, 9), return_inverse=True)
    summed = np.bincount(where, weights=np.tile(freq, 9))
    hood = keys // nvalues
    starts = np.flatnonzero(np.r_[True, hood[1:] != hood[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(hood)]))
    running = np.cumsum(summed)
    before_group = np.r_[0.0, running][starts][group]
    total = (running[np.r_[starts[1:] - 1, len(hood) - 1]])[group] - before_group
    # The mid-rank of each (neighbourhood, value): below it plus half at it, over all.
    midrank = (running - summed - before_group + summed / 2) / total

    # Each pixel between the centres of four blocks: the ones before it and after it.
    u = (col + 0.5) / side - 0.5
    v = (row + 0.5) / side - 0.5
    cx, cy = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    wx, wy = u - cx, v - cy
    rank = np.zeros(len(row))
    for dx, dy, weight in ((0, 0, (1 - wx) * (1 - wy)), (1, 0, wx * (1 - wy)),
                           (0, 1, (1 - wx) * wy), (1, 1, wx * wy)):
        block = (cy + dy - y0) * width + (cx + dx - x0)
        # The pixel's own block is within one block of each of these centres' blocks, so
        # its (neighbourhood, value) pair is always there.
        rank += weight * midrank[np.searchsorted(keys, block * nvalues + value)]
    heat = (LOW + (1 - LOW) * rank).astype(np.float32)
    start = 0
    for _, _, _, _, rows, cols, key in parts:
        out[key][rows, cols] = heat[start:start + len(rows)]
        start += len(rows)
    return out
