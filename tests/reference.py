"""Dense reference implementations of the sparse steps: the test answers.

Each works on one (height, width) array over a grid, written as plainly as possible,
so the tile-by-tile code in the package can be checked against it bit for bit.
"""

import numpy as np

from geoheat import tiles
from geoheat.tiles import Grid


def count_points(xy: np.ndarray, grid: Grid) -> np.ndarray:
    """Trackpoints per pixel: a (height, width) uint32 grid; points outside are dropped."""
    col, row = tiles.world_pixels(xy, grid.zoom)
    row = np.floor(row).astype(np.int64) - grid.row_off
    col = np.floor(col).astype(np.int64) - grid.col_off
    keep = (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
    counts = np.zeros((grid.height, grid.width), dtype=np.uint32)
    np.add.at(counts, (row[keep], col[keep]), 1)
    return counts


def cdf_scale(counts: np.ndarray) -> np.ndarray:
    """Each non-zero pixel's share of non-zero pixels with a count <= its own."""
    heat = np.zeros(counts.shape, dtype=np.float32)
    nonzero = counts > 0
    values, freq = np.unique(counts[nonzero], return_counts=True)
    if len(values):
        cdf = (np.cumsum(freq) / freq.sum()).astype(np.float32)
        heat[nonzero] = cdf[np.searchsorted(values, counts[nonzero])]
    return heat


def linear_scale(counts: np.ndarray) -> np.ndarray:
    """Counts divided by the largest count."""
    top = counts.max() if counts.size else 0
    heat = counts.astype(np.float32)
    return heat / top if top else heat


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian of sigma pixels cut at 4 sigma, zero outside: scipy's definition,
    written out in numpy as an independent check of scipy.ndimage."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)])
        size = out.shape[axis]
        out = np.zeros_like(out)
        for offset, weight in enumerate(kernel):
            window = padded[offset:offset + size] if axis == 0 else padded[:, offset:offset + size]
            out += weight * window
    return out.astype(np.float32)


def blur(heat: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the whole grid (scipy.ndimage), rescaled so that a straight line
    of heat 1 (or the hottest pixel, if lower) is 1, and clipped there."""
    line = 1.0
    if sigma > 0:
        from scipy.ndimage import gaussian_filter as scipy_gaussian

        heat = scipy_gaussian(heat.astype(np.float32), sigma, mode="constant", truncate=4.0)
        n = 2 * int(4.0 * sigma + 0.5) + 1
        straight = np.zeros((n, n))
        straight[n // 2] = 1
        line = scipy_gaussian(straight, sigma, mode="constant", truncate=4.0)[n // 2, n // 2]
    top = min(heat.max(), line) if heat.size else 0
    return np.minimum(heat / top, 1).astype(np.float32) if top > 0 else heat.astype(np.float32)


def from_dense(dense: np.ndarray, grid: Grid) -> dict:
    """A (height, width) array over the grid as sparse tiles (all-zero tiles left out)."""
    sparse = {}
    for t in tiles.grid_tiles(grid):
        r, c = tiles.tile_window((t.x, t.y), grid)
        block = dense[r:r + tiles.TILE_SIZE, c:c + tiles.TILE_SIZE]
        if block.any():
            sparse[(t.x, t.y)] = block.copy()
    return sparse


def scattered_counts(seed: int = 5, n: int = 3000, zoom: int = 16):
    """Points scattered over a 1.5 km square spanning several tiles at zoom 16, their
    grid and their sparse counts (points mode): an input crossing tile borders."""
    from geoheat import rasterize
    from geoheat.extent import points_bounds
    from geoheat.projection import project

    rng = np.random.default_rng(seed)
    xy = project(np.column_stack([rng.normal(14.505, 0.004, n), rng.normal(46.052, 0.003, n)]))
    grid = tiles.grid_covering(points_bounds(xy), zoom)
    assert grid.width > 256 and grid.height > 256  # tile borders inside
    return xy, grid, rasterize.tile_counts(*rasterize.point_pixels(xy, zoom), grid)
