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


def count_distribution(counts: dict[TileKey, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-zero counts of all tiles and how many pixels have each."""
    nonzero = tiles.nonzero_values(counts)
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
    values, freq = count_distribution(counts)
    if scaling == "linear":
        top = int(values[-1]) if len(values) else 1
        return values, (values / top).astype(np.float32)
    return values, rank_heat(freq)


def _apply(counts: dict[TileKey, np.ndarray], values: np.ndarray, heats: np.ndarray):
    def per_pixel(block):
        out = np.zeros(block.shape, dtype=np.float32)
        mask = block > 0
        out[mask] = heats[np.searchsorted(values, block[mask])]
        return out

    return tiles.map_pixels(counts, per_pixel, np.float32)


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
    top = max((int(part.max()) for part in tiles.nonzero_values(counts) if len(part)), default=0)
    return tiles.map_pixels(counts, lambda block: block.astype(np.float32) / (top or 1),
                            np.float32)


SCALERS = {"cdf": cdf_scale_tiles, "linear": linear_scale_tiles}


def kernel_radius(sigma: float) -> int:
    """How far the blur reaches, in pixels (as scipy.ndimage cuts it)."""
    return int(TRUNCATE * sigma + 0.5)


# The blur works on a tile's cells (tiles.CELL pixels wide), and skips a cell with no
# heat within its reach: at street zoom most of a tile with heat is empty (a city's
# tiles at zoom 16: 1.5% of their pixels lit, 32% of their 64-pixel cells near one).
CELL = tiles.CELL
# Cells blurred together in one call (2 x 80 x 80 float32 each at sigma 2: ~13 MB), fewer
# where a cell's halo makes them larger than BATCH_BYTES (a wide blur).
CELL_BATCH = 256
BATCH_BYTES = 16 * 2**20


def blur_tiles(scaled: dict[TileKey, np.ndarray], sigma: float, grid: Grid, only=None,
               workers: int | None = None):
    """The heat softened by a Gaussian of sigma pixels, over sparse tiles, without
    changing the scale.

    A pixel with heat keeps it. A pixel without takes G*heat / max(G*footprint, peak),
    where G* is the blur, footprint the pixels with heat and peak what the blur leaves
    of a straight 1-pixel line at its centre (line_peak): beside a lone line that is
    the line's heat blurred as a line, and among many lines (footprint above the
    line's) the Gaussian-weighted mean heat around: never more than the lines near it;
    below FRINGE_MIN, nothing.

    No seams: each tile is blurred with a halo of its neighbours' pixels, and tiles
    next to data (inside the grid) are added where the blur reaches them. Only the
    CELL-pixel cells with heat within the blur's reach are filtered (the others stay
    0, as the filter would leave them), CELL_BATCH at a time; each cell with its own
    halo, so every pixel is what filtering the whole tile gives, bit for bit. only: the
    tiles to make (None: all; a served tile makes its own, from the tiles around it).
    workers: threads filtering the batches while this one gathers the next (None: the
    cores this process may use; 1: none); any number gives the same heat, bit for bit.
    """
    check_sigma(sigma)
    size = tiles.TILE_SIZE
    if sigma == 0 or not scaled:
        kept = scaled if only is None else (
            scaled.subset(only) if isinstance(scaled, tiles.CellTiles)
            else {key: block for key, block in scaled.items() if key in only})
        return tiles.map_pixels(kept, lambda block: block.astype(np.float32), np.float32)
    radius = kernel_radius(sigma)
    reach = -(-radius // size)  # tiles of halo
    tx0, ty0 = grid.col_off // size, grid.row_off // size
    tx1, ty1 = tx0 + grid.width // size, ty0 + grid.height // size
    wanted = {(x + dx, y + dy) for x, y in scaled
              for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
              if tx0 <= x + dx < tx1 and ty0 <= y + dy < ty1}
    if only is not None:
        wanted &= set(only)
    if workers is None:
        from .checks import available_cores

        workers = available_cores()
    cells = _CellBlur(sigma, radius, reach, workers, len(wanted) * tiles.CELLS ** 2)
    try:
        made = _blur_cells(scaled, cells, sorted(wanted), radius, reach)
    finally:
        cells.close()
    if len(wanted) > 64:  # a level's temporaries, given back (glibc would keep them)
        from .bytecache import give_back_memory

        give_back_memory()
    return made


def _blur_cells(scaled, cells: "_CellBlur", wanted: list[TileKey], radius: int,
                reach: int) -> "tiles.CellTiles":
    """blur_tiles' wanted tiles (in order), each gathered with its halo and queued."""
    size = tiles.TILE_SIZE
    occupied = _occupancy(scaled)
    # The tiles read lately (CellTiles make a dense block on each read): the tiles go
    # by column, so those left of the blur's reach are dropped.
    recent: dict[TileKey, np.ndarray | None] = {}
    column = None
    # The heat and its footprint around a tile (no blur across the first axis).
    window = np.empty((2, size + 2 * radius, size + 2 * radius), dtype=np.float32)
    for x, y in wanted:
        near = cells.near(occupied, x, y)
        if not near.any():
            continue  # no heat within the blur's reach of this tile
        if x != column:
            column = x
            for gone in [key for key in recent if key[0] < x - reach]:
                del recent[gone]
        window.fill(0)
        for dx in range(-reach, reach + 1):
            for dy in range(-reach, reach + 1):
                key = (x + dx, y + dy)
                if key not in recent:
                    recent[key] = scaled.get(key)
                block = recent[key]
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
        cells.add((x, y), window, near)
    return cells.finish()


# Whether a tile's GRANULE x GRANULE pixel squares hold heat: what tells, without
# looking at pixels again, which cells have heat within reach.
GRANULE = 8


def _occupancy(scaled) -> dict[TileKey, np.ndarray]:
    """Each tile's (32, 32) granules holding heat (from CellTiles' cells alone)."""
    n, per = tiles.TILE_SIZE // GRANULE, tiles.CELL // GRANULE
    if not isinstance(scaled, tiles.CellTiles):
        return {key: (block > 0).reshape(n, GRANULE, n, GRANULE).any(axis=(1, 3))
                for key, block in scaled.items()}
    occupied = {}
    for key, mask, cells in scaled.parts():
        granules = np.zeros((tiles.CELLS, tiles.CELLS, per, per), dtype=bool)
        granules[mask] = (cells > 0).reshape(-1, per, GRANULE, per, GRANULE).any(axis=(2, 4))
        occupied[key] = granules.swapaxes(1, 2).reshape(n, n)
    return occupied


class _CellBlur:
    """The cells of blur_tiles' tiles waiting to be filtered, and the tiles made.

    With workers > 1, each full batch is filtered on a thread of its own while the
    caller gathers the next (scipy.ndimage's filters and numpy's arithmetic let go of
    the GIL): at most `workers` batches in flight, each in buffers of its own made here
    and reused (a thread allocating them would keep the memory in its own heap). The
    last, partial batch (a served metatile's only one) is filtered here, without threads."""

    def __init__(self, sigma: float, radius: int, reach: int, workers: int = 1,
                 most: int = CELL_BATCH):
        self.sigma, self.radius, self.reach, self.peak = sigma, radius, reach, line_peak(sigma)
        self.workers = max(int(workers), 1)
        self.pool = None  # made at the first full batch, with workers > 1
        side = CELL + 2 * radius
        # Cells a batch: at most one more than the tiles have (a served metatile: a few
        # dozen), so a blur that fits in one batch never fills it: filtered in finish,
        # here.
        self.size = max(1, min(CELL_BATCH, most + 1, BATCH_BYTES // (2 * side * side * 4)))
        self.flying: list = []  # (future, its batch), oldest first
        self.spare: list[_Batch] = []  # batches filtered, free again
        self.batch = self._buffers()
        self.places: list[tuple[TileKey, int, int]] = []
        self.blurred: dict[TileKey, list] = {}  # key -> [(i, j, cell)], cells with heat
        # A cell's reach in granules (rounded out: a cell filtered in vain stays 0), and
        # the summed-area table's corners of each cell's reach, in the granules around
        # the tile (reach tiles of them on each side).
        n, per = tiles.TILE_SIZE // GRANULE, CELL // GRANULE
        halo = -(-radius // GRANULE)
        start = reach * n + np.arange(tiles.TILE_SIZE // CELL) * per - halo
        self.corners = (start[:, None], start[None, :], (start + per + 2 * halo)[:, None],
                        (start + per + 2 * halo)[None, :])
        self.granules = np.zeros(((2 * reach + 1) * n,) * 2, dtype=bool)
        self.table = np.zeros(((2 * reach + 1) * n + 1,) * 2, dtype=np.int32)

    def _buffers(self) -> "_Batch":
        """A batch's buffers (at sigma 1, 256 cells: 36 MB), a spare one's if any."""
        if self.spare:
            return self.spare.pop()
        return _Batch(self.size, CELL + 2 * self.radius)

    def near(self, occupied: dict, x: int, y: int) -> np.ndarray:
        """Which cells of tile (x, y) have heat within the blur's reach."""
        n, reach, granules = tiles.TILE_SIZE // GRANULE, self.reach, self.granules
        granules.fill(False)
        for dx in range(-reach, reach + 1):
            for dy in range(-reach, reach + 1):
                got = occupied.get((x + dx, y + dy))
                if got is not None:
                    r, c = (dy + reach) * n, (dx + reach) * n
                    granules[r:r + n, c:c + n] = got
        table = self.table
        np.cumsum(np.cumsum(granules, axis=0, dtype=np.int32), axis=1, out=table[1:, 1:])
        r0, c0, r1, c1 = self.corners
        return (table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]) > 0

    def add(self, key: TileKey, window: np.ndarray, near: np.ndarray) -> None:
        """Queue the tile's cells that have heat within reach (near) for filtering."""
        side = CELL + 2 * self.radius
        for i, j in zip(*np.nonzero(near)):
            r, c = i * CELL, j * CELL
            self.batch.cells[len(self.places)] = window[:, r:r + side, c:c + side]
            self.places.append((key, int(i), int(j)))
            if len(self.places) == self.size:
                self._send()

    def finish(self) -> "tiles.CellTiles":
        if self.places:
            self._keep(self._filter(self.batch, self.places))
        while self.flying:
            self._land()
        made = tiles.CellTiles(np.float32)
        for key in sorted(self.blurred):
            found = self.blurred.pop(key)  # each tile's cells let go as it is packed
            found.sort(key=lambda item: item[:2])  # the mask's order
            mask = np.zeros((tiles.CELLS, tiles.CELLS), dtype=bool)
            for i, j, _ in found:
                mask[i, j] = True
            made.put_cells(key, mask, np.stack([cell for _, _, cell in found]))
        return made

    def close(self) -> None:
        """Let the threads go (also when the blur stops on an error)."""
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None
        self.flying.clear()

    def _send(self) -> None:
        """Filter the full batch: here with one worker, else on a thread, then go on
        in another buffer (once the oldest batch in flight is done, past `workers`)."""
        places, self.places = self.places, []
        if self.workers == 1:
            self._keep(self._filter(self.batch, places))
            return
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="geoheat-blur")
        self.flying.append((self.pool.submit(self._filter, self.batch, places), self.batch))
        if len(self.flying) >= self.workers:
            self._land()
        self.batch = self._buffers()

    def _land(self) -> None:
        """Keep the oldest batch in flight's cells, its buffers free again."""
        future, batch = self.flying.pop(0)
        self._keep(future.result())
        self.spare.append(batch)

    def _keep(self, filtered: tuple[list, np.ndarray, np.ndarray]) -> None:
        """The filtered batch's cells left with heat, each copied out of the batch's
        heat here (memory this thread's own: a worker's would be kept from reuse)."""
        places, heat, lit = filtered
        for (key, i, j), cell, keep in zip(places, heat, lit):
            if keep:
                self.blurred.setdefault(key, []).append((i, j, cell.copy()))

    def _filter(self, batch: "_Batch", places: list) -> tuple[list, np.ndarray, np.ndarray]:
        """The batch's first len(places) cells blurred: places, their heat and which
        have any. Writes in batch's buffers only, reads self's settings (a worker
        thread's whole job, allocating next to nothing)."""
        from scipy.ndimage import gaussian_filter1d  # 0.14 s to import: only when blurring

        n, r = len(places), self.radius
        # As gaussian_filter(window, (0, sigma, sigma)) filters: rows' axis, then columns'.
        # (the second pass only on the rows kept: each row is filtered on its own)
        gaussian_filter1d(batch.cells[:n], self.sigma, axis=-2, output=batch.across[:n],
                          mode="constant", cval=0.0, truncate=TRUNCATE)
        gaussian_filter1d(batch.across[:n, :, r:r + CELL], self.sigma, axis=-1,
                          output=batch.along[:n], mode="constant", cval=0.0, truncate=TRUNCATE)
        heat, mask = batch.heat[:n], batch.mask[:n]
        # heat / max(footprint, peak); 0 below FRINGE_MIN; a pixel's own heat where it has
        # some; within [0, 1]
        np.maximum(batch.along[:n, 1, :, r:r + CELL], self.peak, out=heat)
        np.divide(batch.along[:n, 0, :, r:r + CELL], heat, out=heat)
        np.less(heat, FRINGE_MIN, out=mask)
        heat[mask] = 0
        own = batch.cells[:n, 0, r:r + CELL, r:r + CELL]
        np.greater(own, 0, out=mask)
        np.copyto(heat, own, where=mask)
        np.clip(heat, 0, 1, out=heat)
        return places, heat, heat.any(axis=(1, 2))


class _Batch:
    """The buffers of a batch of n cells in the blur (side: a cell with its halo)."""

    __slots__ = ("cells", "across", "along", "heat", "mask")

    def __init__(self, n: int, side: int):
        # heat and footprint, each cell with its halo; filtered along the rows' axis;
        # then along the columns' (the halo's rows cut); the blurred heat; a pixel mask
        self.cells = np.empty((n, 2, side, side), np.float32)
        self.across = np.empty((n, 2, side, side), np.float32)
        self.along = np.empty((n, 2, CELL, side), np.float32)
        self.heat = np.empty((n, CELL, CELL), np.float32)
        self.mask = np.empty((n, CELL, CELL), bool)


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
