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


LOW = 0.25  # the heat of the fewest passes' lower end (heat.LOW)


def cdf_scale(counts: np.ndarray) -> np.ndarray:
    """Each non-zero pixel's mid-rank among the non-zero pixels (the share with a smaller
    count plus half the share with its count), from LOW to 1."""
    heat = np.zeros(counts.shape, dtype=np.float32)
    nonzero = counts > 0
    lit = counts[nonzero].astype(np.int64)
    if lit.size:
        ordered = np.sort(lit)
        below = np.searchsorted(ordered, lit, side="left")
        at_or_below = np.searchsorted(ordered, lit, side="right")
        midrank = (below + at_or_below) / 2 / lit.size
        heat[nonzero] = (LOW + (1 - LOW) * midrank).astype(np.float32)
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
    """The heat softened over the whole grid (scipy.ndimage): pixels with heat keep it;
    the others get blur(heat) / max(blur(footprint), a straight 1-pixel line's blurred
    centre), the footprint being the pixels with heat, or 0 below 0.01."""
    if sigma == 0:
        return heat.astype(np.float32)
    from scipy.ndimage import gaussian_filter as scipy_gaussian

    heat = heat.astype(np.float32)
    blurred = scipy_gaussian(heat, sigma, mode="constant", truncate=4.0)
    footprint = scipy_gaussian((heat > 0).astype(np.float32), sigma, mode="constant",
                               truncate=4.0)
    n = 2 * int(4.0 * sigma + 0.5) + 1
    straight = np.zeros((n, n))
    straight[n // 2] = 1
    line = scipy_gaussian(straight, sigma, mode="constant", truncate=4.0)[n // 2, n // 2]
    soft = np.clip(blurred / np.maximum(footprint, np.float32(line)), 0, 1)
    soft[soft < 0.01] = 0  # too faint to see (heat.FRINGE_MIN)
    return np.where(heat > 0, heat, soft).astype(np.float32)


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


def line_pixels(xy: np.ndarray, offsets, zoom: int, hidden=None):
    """The pixels lines pass through, one sample at a time: each step from a point to the
    next (a segment's last point: a step to itself) sampled at k / n of the way, n its
    longest side in pixels rounded up (at least 1); a sample counts when its pixel is not
    the one of the sample before in its segment, and hidden(start, end, t) does not hide
    it. rasterize.line_pixels' rule, in plain Python."""
    col, row = tiles.world_pixels(xy, zoom)
    samples = []  # (start point, end point, t, row, col, entered)
    for a, b in zip(offsets[:-1], offsets[1:]):
        before = None
        for i in range(a, b):
            j = i + 1 if i + 1 < b else i
            dc, dr = float(col[j] - col[i]), float(row[j] - row[i])
            n = max(int(np.ceil(max(abs(dc), abs(dr)))), 1)
            for k in range(n):
                t = k / n
                pixel = (int(np.floor(row[i] + t * dr)), int(np.floor(col[i] + t * dc)))
                samples.append((i, j, t, *pixel, pixel != before))
                before = pixel
    keep = np.array([s[5] for s in samples], dtype=bool)
    if hidden is not None and samples:
        keep &= ~hidden(np.array([s[0] for s in samples]), np.array([s[1] for s in samples]),
                        np.array([s[2] for s in samples]))
    rows = np.array([s[3] for s in samples], dtype=np.int64)
    cols = np.array([s[4] for s in samples], dtype=np.int64)
    return (rows[keep], cols[keep]) if samples else (rows, cols)
