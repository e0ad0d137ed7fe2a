"""A level's heat for `geoheat serve`, made METATILE x METATILE tiles at a time: the
level's Scale (level.make_scale over its lit tiles, or a fixed sample of them when it is
large), and a metatile's heat (level.count_region over the points that can reach it,
level.level_heat), kept as colormap indices, deflated: byte-equal to the build's tiles.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import tiles
from .bytecache import give_back_memory
from .colour import lut_index
from .heat import kernel_radius
from .level import count_region, level_heat, make_scale, modulus, most_tiles, sample_of, sampled
from .tiles import Bbox, Grid, TileKey
from .viewselection import Selection, View, points_near

SIZE = tiles.TILE_SIZE
# A level that may light up to this many tiles (~256 MB of counts) is counted whole, once,
# and its tiles cut from the counts; a larger one is counted tile by tile, as asked.
WHOLE_TILES = 1024
# Tiles made together: one count and blur for the METATILE x METATILE tiles around.
METATILE = 2
# Under local contrast a tile's counts reach 2 blocks (~1.3 km) around it: more tiles
# share that count.
LOCAL_METATILE = 8


@dataclass
class Level:
    """Heat of one zoom for one view: the grid and the lit tiles' colormap indices made
    so far (a metatile's, or with lit_tiles the whole level's)."""

    zoom: int
    grid: Grid | None
    index: dict[TileKey, bytes]  # zlib of each (256, 256) uint8 colour.lut_index(heat)
    problem: str | None = None
    ticks: tuple = ()  # its legend: (heat, count) pairs (local: none)

    @property
    def nbytes(self) -> int:
        return sum(len(block) + 100 for block in self.index.values()) + 512

    def block(self, key: TileKey) -> np.ndarray | None:
        """A tile's (256, 256) uint8 colormap indices, or None without heat."""
        data = self.index.get(key)
        if data is None:
            return None
        return np.frombuffer(zlib.decompress(data), dtype=np.uint8).reshape(SIZE, SIZE)


def metatile_side(view: View) -> int:
    """How many tiles across a view's tiles are made together."""
    return LOCAL_METATILE if view.normalize == "local" else METATILE


def level_scale(chosen: Selection, grid: Grid | None, zoom: int, scaling: str, mode: str,
                shield, keep_counts: Callable):
    """The level's Scale (level.make_scale over its lit tiles, or a fixed sample of them
    when it is large, as the build ranks it). A level that may light up to WHOLE_TILES
    tiles is counted whole: keep_counts(counts) is given its counts, to cut tiles from.
    shield: the lines' privacy.SampleFilter, or None."""
    m = modulus(chosen.plan, zoom)
    if most_tiles(chosen.plan, zoom) <= WHOLE_TILES:  # counted whole: tiles cut from it
        counts = count_region(chosen.xy, chosen.segments, mode, grid,
                              lambda tx, ty: np.ones(len(tx), dtype=bool),
                              shield, chosen.ends)
        keep_counts(counts)
        scale = make_scale(sample_of(counts, m), scaling)
    else:
        scale = make_scale(count_region(chosen.xy, chosen.segments, mode,
                                        grid, lambda tx, ty: sampled(tx, ty, m),
                                        shield, chosen.ends),
                           scaling)
    give_back_memory()
    return scale


def metatile_region(grid: Grid, mx: int, my: int, side: int):
    """The tiles (x0, y0, x1, y1) of metatile (mx, my) of side x side tiles inside the
    grid, or None where it misses the grid."""
    gx0, gy0 = grid.col_off // SIZE, grid.row_off // SIZE
    gx1, gy1 = gx0 + grid.width // SIZE, gy0 + grid.height // SIZE
    x0, y0 = max(mx * side, gx0), max(my * side, gy0)
    x1, y1 = min(mx * side + side, gx1), min(my * side + side, gy1)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def metatile_heat(chosen: Selection, grid: Grid, zoom: int, region, scale, sigma: float,
                  mode: str, shield, whole: dict | None) -> Level:
    """The heat of the tiles region (x0, y0, x1, y1, metatile_region) at zoom, scaled by
    scale (None: local contrast) and blurred as the build's level. whole: the level's
    counts where it was counted whole (level_scale), else None: counted from the points
    near the region."""
    x0, y0, x1, y1 = region
    reach = -(-kernel_radius(sigma) // SIZE) if sigma else 0
    # The tiles whose counts the heat needs: the blur's halo, and under local contrast
    # the neighbourhoods of its blocks (2 blocks on each side, see contrast.py).
    cx0, cy0, cx1, cy1 = x0 - reach, y0 - reach, x1 + reach, y1 + reach
    if scale is None:
        from .contrast import block_pixels

        side = block_pixels(grid)
        cx0 = (cx0 * SIZE // side - 2) * side // SIZE
        cy0 = (cy0 * SIZE // side - 2) * side // SIZE
        cx1 = -(-((cx1 * SIZE - 1) // side + 3) * side // SIZE)
        cy1 = -(-((cy1 * SIZE - 1) // side + 3) * side // SIZE)
    res = tiles.resolution(zoom) * SIZE
    box = Bbox(cx0 * res - tiles.ORIGIN_SHIFT, tiles.ORIGIN_SHIFT - cy1 * res,
               cx1 * res - tiles.ORIGIN_SHIFT, tiles.ORIGIN_SHIFT - cy0 * res)
    if whole is not None:
        counts = {(x, y): block for (x, y), block in whole.items()
                  if cx0 <= x < cx1 and cy0 <= y < cy1}
    else:
        xy, segments, ends = points_near(chosen, zoom, (cx0, cy0, cx1, cy1), box)
        counts = count_region(xy, segments, mode, grid,
                              lambda tx, ty: (tx >= cx0) & (tx < cx1) & (ty >= cy0)
                              & (ty < cy1), shield, ends)
    only = {(x, y) for x in range(x0, x1) for y in range(y0, y1)}
    heat = level_heat(counts, grid, scale, sigma, only=only)
    if len(counts) > 64:  # a big region's temporaries (local contrast): give them back
        del counts
        give_back_memory()
    index = {}
    for key, block in heat.items():
        block = lut_index(block)
        if block.any():  # mostly zeros: ~20x smaller deflated, ~0.1 ms to inflate
            index[key] = zlib.compress(block.tobytes(), 1)
    return Level(zoom, grid, index, ticks=() if scale is None else scale.ticks)


def metatiles_near_tracks(chosen: Selection, zoom: int, side: int,
                          mode: str) -> list[tuple[int, int]]:
    """The metatiles (side x side tiles) a selection's points or lines may light, and
    those next to them (the blur's reach)."""
    if chosen.area is None:
        return []
    from .level import point_tiles

    # Lines between points may cross tiles without a point: their boxes' tiles too.
    tx, ty = point_tiles(chosen.xy, zoom)
    mx, my = tx // side, ty // side
    found = set(zip(mx.tolist(), my.tolist()))
    if mode == "lines" and len(tx) > 1:
        jump = (np.abs(np.diff(tx)) > 0) | (np.abs(np.diff(ty)) > 0)
        for i in np.flatnonzero(jump):
            for x in range(min(tx[i], tx[i + 1]) // side,
                           max(tx[i], tx[i + 1]) // side + 1):
                for y in range(min(ty[i], ty[i + 1]) // side,
                               max(ty[i], ty[i + 1]) // side + 1):
                    found.add((x, y))
    return sorted({(x + dx, y + dy) for x, y in found for dx in (-1, 0, 1)
                   for dy in (-1, 0, 1)})


def counts_bytes(counts) -> int:
    """The memory a level's counts ({tile: block}) hold, for a cache bounded in bytes."""
    return sum(block.nbytes + 100 for block in counts.values()) + 512


def scale_bytes(scale) -> int:
    """The memory a level's Scale holds (None: none), for a cache bounded in bytes."""
    return 0 if scale is None else scale.values.nbytes * 3 + 1024
