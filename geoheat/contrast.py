"""Local contrast: each pixel's heat is its rank among the counts of its neighbourhood.

The global CDF ranks a pixel among all pixels of the map, so a quiet street beside a
busy corridor stays dim. Here (adaptive histogram equalisation, as CLAHE does for
images) each 256-pixel tile gets the empirical CDF of the non-zero counts in the
window of tiles around it, and each pixel's heat blends the CDFs of the four tiles
whose centres surround it, bilinearly by distance: the blend changes by the same step
across a tile edge as inside a tile, so no edge shows. Ranks need no contrast limit
(CLAHE's clip guards against amplifying noise in flat regions; a count has none), and
a neighbourhood with one track gets heat 1 on it.
"""

import numpy as np

from . import tiles
from .tiles import TileKey

# The neighbourhood: the tiles within this many tiles of a tile (3 x 3 tiles, 768 px).
RADIUS = 1

Sparse = dict[TileKey, np.ndarray]


def _histogram(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-zero counts of a block and how many pixels have each."""
    return np.unique(block[block > 0], return_counts=True)


def tile_cdfs(counts: Sparse, keys, radius: int = RADIUS):
    """For each tile key, (values, cdf): the empirical CDF of the non-zero counts of the
    tiles within `radius` tiles of it (cdf[i]: the share with a count <= values[i])."""
    histograms = {key: _histogram(block) for key, block in counts.items()}
    cdfs = {}
    for x, y in keys:
        parts = [histograms[(x + dx, y + dy)] for dx in range(-radius, radius + 1)
                 for dy in range(-radius, radius + 1) if (x + dx, y + dy) in histograms]
        if not parts:
            cdfs[(x, y)] = (np.zeros(1, np.uint32), np.zeros(1, np.float64))
            continue
        values = np.concatenate([v for v, _ in parts])
        freq = np.concatenate([f for _, f in parts])
        unique, inverse = np.unique(values, return_inverse=True)
        summed = np.bincount(inverse, weights=freq)
        cdfs[(x, y)] = (unique, np.cumsum(summed) / summed.sum())
    return cdfs


def _rank(values: np.ndarray, cdf: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The CDF at counts v (the share of the window's counts <= v)."""
    at = np.searchsorted(values, v, side="right") - 1
    return np.where(at >= 0, cdf[np.maximum(at, 0)], 0.0)


def local_scale_tiles(counts: Sparse, radius: int = RADIUS) -> Sparse:
    """Each non-zero pixel's heat in (0, 1]: its rank among the non-zero counts of its
    neighbourhood, blended bilinearly between the four nearest tiles' neighbourhoods.
    Zero stays zero. Deterministic, and sparse: only tiles with counts are made."""
    size = tiles.TILE_SIZE
    # Pixel centres in units of tiles, from the centre of the tile they lie in: -0.5..0.5.
    offset = (np.arange(size) + 0.5) / size - 0.5
    low = offset < 0
    weight = np.where(low, offset + 1, offset)  # the weight of the later of two centres
    needed = {(x + dx, y + dy) for x, y in counts for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    cdfs = tile_cdfs(counts, needed, radius)
    scaled = {}
    for (x, y), block in counts.items():
        out = np.zeros(block.shape, dtype=np.float32)
        mask = block > 0
        if not mask.any():
            scaled[(x, y)] = out
            continue
        rows, cols = np.nonzero(mask)
        v = block[rows, cols]
        # The tile centres before and after each pixel, across and down.
        x0 = x - low[cols].astype(int)
        y0 = y - low[rows].astype(int)
        wx, wy = weight[cols], weight[rows]
        heat = np.zeros(len(v))
        for dx, dy, w in ((0, 0, (1 - wx) * (1 - wy)), (1, 0, wx * (1 - wy)),
                          (0, 1, (1 - wx) * wy), (1, 1, wx * wy)):
            for tx, ty in set(zip((x0 + dx).tolist(), (y0 + dy).tolist())):
                pick = (x0 + dx == tx) & (y0 + dy == ty)
                heat[pick] += w[pick] * _rank(*cdfs[(tx, ty)], v[pick])
        out[rows, cols] = heat
        scaled[(x, y)] = out
    return scaled
