"""Counts to heat: scaled to [0, 1] (by their CDF or linearly), then blurred.

Every step works on sparse tiles (tile key -> 256x256 block), over all tiles
together where the result depends on the whole (the CDF, the hottest pixel).
"""

import numpy as np

from . import tiles
from .options import check_sigma
from .tiles import Grid, TileKey

# scipy.ndimage's default: the Gaussian is cut at 4 sigma.
TRUNCATE = 4.0


def cdf_scale_tiles(counts: dict[TileKey, np.ndarray]) -> dict[TileKey, np.ndarray]:
    """Each non-zero pixel's heat: the share of non-zero pixels (of all tiles) with a count
    <= its own.

    The empirical CDF of the counts (Strava's method): heat in (0, 1], and a few very
    busy pixels do not wash out the rest. Zero stays zero.
    """
    nonzero = [block[block > 0] for block in counts.values()]
    values, freq = np.unique(np.concatenate(nonzero) if nonzero else [], return_counts=True)
    cdf = (np.cumsum(freq) / max(freq.sum(), 1)).astype(np.float32)
    scaled = {}
    for key, block in counts.items():
        out = np.zeros(block.shape, dtype=np.float32)
        mask = block > 0
        out[mask] = cdf[np.searchsorted(values, block[mask])]
        scaled[key] = out
    return scaled


def linear_scale_tiles(counts: dict[TileKey, np.ndarray]) -> dict[TileKey, np.ndarray]:
    """Counts divided by the largest count of all tiles: heat in [0, 1]."""
    top = max((int(block.max()) for block in counts.values()), default=0)
    return {key: block.astype(np.float32) / (top or 1) for key, block in counts.items()}


SCALERS = {"cdf": cdf_scale_tiles, "linear": linear_scale_tiles}


def kernel_radius(sigma: float) -> int:
    """How far the blur reaches, in pixels (as scipy.ndimage cuts it)."""
    return int(TRUNCATE * sigma + 0.5)


def blur_tiles(scaled: dict[TileKey, np.ndarray], sigma: float, grid: Grid):
    """Gaussian blur of sigma pixels over sparse tiles, rescaled so the hottest pixel is 1.

    No seams: each tile is blurred with a halo of its neighbours' pixels, and tiles
    next to data (inside the grid) are added where the blur reaches them.
    """
    check_sigma(sigma)
    size = tiles.TILE_SIZE
    if sigma == 0 or not scaled:
        blurred = {key: block.astype(np.float32) for key, block in scaled.items()}
    else:
        from scipy.ndimage import gaussian_filter  # 0.14 s to import: only when blurring

        radius = kernel_radius(sigma)
        reach = -(-radius // size)  # tiles of halo
        tx0, ty0 = grid.col_off // size, grid.row_off // size
        tx1, ty1 = tx0 + grid.width // size, ty0 + grid.height // size
        wanted = {(x + dx, y + dy) for x, y in scaled
                  for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
                  if tx0 <= x + dx < tx1 and ty0 <= y + dy < ty1}
        blurred = {}
        window = np.empty((size + 2 * radius, size + 2 * radius), dtype=np.float32)
        for x, y in sorted(wanted):
            window.fill(0)
            for dx in range(-reach, reach + 1):
                for dy in range(-reach, reach + 1):
                    block = scaled.get((x + dx, y + dy))
                    if block is None:
                        continue
                    # The block's place in window coordinates, clipped to the window.
                    r0, c0 = radius + dy * size, radius + dx * size
                    rs, cs = max(r0, 0), max(c0, 0)
                    re, ce = min(r0 + size, window.shape[0]), min(c0 + size, window.shape[1])
                    if rs < re and cs < ce:
                        window[rs:re, cs:ce] = block[rs - r0:re - r0, cs - c0:ce - c0]
            # The window's own edge is as far from the tile as the kernel reaches, so its
            # zero padding outside never touches the tile's pixels.
            out = gaussian_filter(window, sigma, mode="constant", cval=0.0, truncate=TRUNCATE)
            out = out[radius:radius + size, radius:radius + size]
            if out.any():
                blurred[(x, y)] = np.ascontiguousarray(out)
    top = min(max((float(block.max()) for block in blurred.values()), default=0.0),
              line_peak(sigma))
    return {key: np.minimum(block / top, 1).astype(np.float32) if top > 0 else block
            for key, block in blurred.items()}


def line_peak(sigma: float) -> float:
    """What the blur leaves of a straight 1-pixel line of heat 1 at its centre: the 1D
    kernel's centre weight (1 without blur)."""
    if sigma == 0:
        return 1.0
    radius = kernel_radius(sigma)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return float(kernel[radius] / kernel.sum())


def passes_at(counts: dict[TileKey, np.ndarray], scaling: str,
              heats: "np.ndarray | list[float]") -> list[int]:
    """The counts the colours at `heats` stand for: for 'cdf' the smallest count whose
    share of lit pixels reaches the heat (a line of that many passes is that hot), for
    'linear' heat x the largest count; at least 1."""
    heats = np.asarray(heats, dtype=float)
    nonzero = [block[block > 0] for block in counts.values()]
    values, freq = np.unique(np.concatenate(nonzero) if nonzero else np.zeros(0, np.uint32),
                             return_counts=True)
    if not len(values):
        return [1] * len(heats)
    if scaling == "linear":
        return [max(int(round(h * int(values[-1]))), 1) for h in heats]
    cdf = np.cumsum(freq) / freq.sum()
    at = np.minimum(np.searchsorted(cdf, heats - 1e-9), len(values) - 1)
    return [int(values[i]) for i in at]


def legend_ticks(counts: dict[TileKey, np.ndarray], scaling: str) -> list[tuple[float, int]]:
    """A few (heat, count) pairs for a legend: the fewest passes, the median, the busy
    end and the most, each at the heat its colour has (no two the same count)."""
    nonzero = [block[block > 0] for block in counts.values()]
    if not nonzero:
        return []
    values, freq = np.unique(np.concatenate(nonzero), return_counts=True)
    if scaling == "linear":
        top = int(values[-1])
        picks = sorted({1, *(max(int(round(top * q)), 1) for q in (0.25, 0.5, 1.0))})
        return [(c / top, c) for c in picks]
    cdf = np.cumsum(freq) / freq.sum()
    ticks = {}
    for share in (0.0, 0.5, 0.9, 1.0):
        i = min(int(np.searchsorted(cdf, share - 1e-9)), len(values) - 1)
        ticks.setdefault(int(values[i]), float(cdf[i]))
    return [(heat, count) for count, heat in sorted(ticks.items())]
