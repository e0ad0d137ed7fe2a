"""Counts to heat: ranked (by the counts' distribution) or scaled linearly, then softened.

A pixel a track crosses keeps the heat its count has: the colour says how often. The
blur only adds a soft fringe around the lines: off the lines a pixel gets the
Gaussian-weighted mean heat of the lines near it, fading with the blur's shape (as a
1-pixel line of that heat would blur), so a bundle of tracks keeps its heat instead
of summing to the top (the old blur divided by the peak a 1-pixel line keeps, 0.399
at sigma 1, and clipped: 2 passes on a street looked like 394).

Every step works on sparse tiles (tile key -> 256x256 block), over all tiles
together where the result depends on the whole (the counts' distribution).
"""

import numpy as np

from . import tiles
from .options import check_sigma
from .tiles import Grid, TileKey

# scipy.ndimage's default: the Gaussian is cut at 4 sigma.
TRUNCATE = 4.0
# The heat of the fewest passes' lower end: a ranked scale runs from LOW to 1, so every
# line is opaque (colormaps.FADE_IN is below it) and only the fringe fades.
LOW = 0.25
# The blur's fringe fainter than this is left out: under 13/255 alpha in the overlays
# (colormaps.FADE_IN), invisible, yet a third of the lit pixels (which then read as
# faint, and fill tiles).
FRINGE_MIN = 0.01


def _distribution(counts: dict[TileKey, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-zero counts of all tiles and how many pixels have each."""
    nonzero = [block[block > 0] for block in counts.values()]
    if not nonzero:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    return np.unique(np.concatenate(nonzero), return_counts=True)


def rank_heat(freq: np.ndarray) -> np.ndarray:
    """The heat of each of a set of distinct counts (ascending) held by freq pixels each:
    LOW + (1 - LOW) x its mid-rank (the share of pixels below it plus half the share at
    it). A count everywhere is the middle colour, never the top; the busiest pixels
    approach 1; and a few very busy pixels do not wash out the rest."""
    freq = np.asarray(freq, dtype=np.float64)
    total = max(freq.sum(), 1.0)
    below = (np.cumsum(freq) - freq) / total
    return (LOW + (1 - LOW) * (below + freq / (2 * total))).astype(np.float32)


def count_heats(counts: dict[TileKey, np.ndarray], scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct non-zero counts, the heat a pixel of each count is drawn with) under
    'cdf' (rank_heat) or 'linear' (count / the largest count)."""
    values, freq = _distribution(counts)
    if scaling == "linear":
        top = int(values[-1]) if len(values) else 1
        return values, (values / top).astype(np.float32)
    return values, rank_heat(freq)


def _apply(counts: dict[TileKey, np.ndarray], values: np.ndarray, heats: np.ndarray):
    scaled = {}
    for key, block in counts.items():
        out = np.zeros(block.shape, dtype=np.float32)
        mask = block > 0
        out[mask] = heats[np.searchsorted(values, block[mask])]
        scaled[key] = out
    return scaled


def cdf_scale_tiles(counts: dict[TileKey, np.ndarray],
                    grid: Grid | None = None) -> dict[TileKey, np.ndarray]:
    """Each non-zero pixel's heat by the rank of its count among all non-zero pixels (of
    all tiles): rank_heat, in [LOW, 1). Strava's method: a few very busy pixels do not
    wash out the rest. Zero stays zero. (grid: unused; a scaler's second argument, which
    contrast.local_scale_tiles needs.)"""
    return _apply(counts, *count_heats(counts, "cdf"))


def linear_scale_tiles(counts: dict[TileKey, np.ndarray],
                       grid: Grid | None = None) -> dict[TileKey, np.ndarray]:
    """Counts divided by the largest count of all tiles: heat in [0, 1]."""
    top = max((int(block.max()) for block in counts.values()), default=0)
    return {key: block.astype(np.float32) / (top or 1) for key, block in counts.items()}


SCALERS = {"cdf": cdf_scale_tiles, "linear": linear_scale_tiles}


def kernel_radius(sigma: float) -> int:
    """How far the blur reaches, in pixels (as scipy.ndimage cuts it)."""
    return int(TRUNCATE * sigma + 0.5)


def blur_tiles(scaled: dict[TileKey, np.ndarray], sigma: float, grid: Grid, only=None):
    """The heat softened by a Gaussian of sigma pixels, over sparse tiles, without
    changing the scale.

    A pixel with heat keeps it. A pixel without takes G*heat / max(G*footprint, peak),
    where G* is the blur, footprint the pixels with heat and peak what the blur leaves
    of a straight 1-pixel line at its centre (line_peak): beside a lone line that is
    the line's heat blurred as a line, and among many lines (footprint above the
    line's) the Gaussian-weighted mean heat around: never more than the lines near it;
    below FRINGE_MIN, nothing.

    No seams: each tile is blurred with a halo of its neighbours' pixels, and tiles
    next to data (inside the grid) are added where the blur reaches them. only: the
    tiles to make (None: all; a served tile makes its own, from the tiles around it).
    """
    check_sigma(sigma)
    size = tiles.TILE_SIZE
    if sigma == 0 or not scaled:
        return {key: block.astype(np.float32) for key, block in scaled.items()
                if only is None or key in only}
    from scipy.ndimage import gaussian_filter  # 0.14 s to import: only when blurring

    peak = line_peak(sigma)
    radius = kernel_radius(sigma)
    reach = -(-radius // size)  # tiles of halo
    tx0, ty0 = grid.col_off // size, grid.row_off // size
    tx1, ty1 = tx0 + grid.width // size, ty0 + grid.height // size
    wanted = {(x + dx, y + dy) for x, y in scaled
              for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
              if tx0 <= x + dx < tx1 and ty0 <= y + dy < ty1}
    if only is not None:
        wanted &= set(only)
    blurred = {}
    # The heat and its footprint, blurred together (no blur across the first axis).
    window = np.empty((2, size + 2 * radius, size + 2 * radius), dtype=np.float32)
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
                re, ce = min(r0 + size, window.shape[1]), min(c0 + size, window.shape[2])
                if rs < re and cs < ce:
                    part = block[rs - r0:re - r0, cs - c0:ce - c0]
                    window[0, rs:re, cs:ce] = part
                    window[1, rs:re, cs:ce] = part > 0
        # The window's own edge is as far from the tile as the kernel reaches, so its
        # zero padding outside never touches the tile's pixels.
        out = gaussian_filter(window, (0, sigma, sigma), mode="constant", cval=0.0,
                              truncate=TRUNCATE)
        heat, footprint = out[:, radius:radius + size, radius:radius + size]
        heat = heat / np.maximum(footprint, peak)
        heat[heat < FRINGE_MIN] = 0
        own = scaled.get((x, y))
        if own is not None:
            heat = np.where(own > 0, own, heat)
        if heat.any():
            blurred[(x, y)] = np.ascontiguousarray(np.clip(heat, 0, 1), dtype=np.float32)
    return blurred


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
    """The counts the colours at `heats` stand for: the smallest count drawn at least
    that hot (the largest for heats above every count's); at least 1."""
    heats = np.asarray(heats, dtype=float)
    values, at_heat = count_heats(counts, scaling)
    if not len(values):
        return [1] * len(heats)
    at = np.minimum(np.searchsorted(at_heat, heats - 1e-6), len(values) - 1)
    return [int(values[i]) for i in at]


def legend_ticks(counts: dict[TileKey, np.ndarray], scaling: str,
                 items: int = 9) -> list[tuple[float, int]]:
    """(heat, count) pairs for a legend, by heat, each at the heat a pixel of that
    count is drawn with: the fewest passes, the most, and between them the counts
    nearest to evenly spaced heats (each count once, at most `items`)."""
    values, at_heat = count_heats(counts, scaling)
    if not len(values):
        return []
    targets = np.linspace(float(at_heat[0]), float(at_heat[-1]), max(items, 2))
    picks = {0, len(values) - 1}
    for target in targets[1:-1]:
        picks.add(int(np.argmin(np.abs(at_heat - target))))
    return [(float(at_heat[i]), int(values[i])) for i in sorted(picks)]
