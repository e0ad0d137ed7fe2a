"""One way to make a zoom level's heat, shared by the build (its output, pyramid levels,
MBTiles, PMTiles and --site) and by `geoheat serve` (any tile, on request).

A tile's heat depends on the counts in and around it (the blur's reach; under
--normalize local, ~2 km: contrast.local_scale_tiles) and, under a global scaling, on
the level's count distribution (the rank of each count). The distribution is made
from bounded work: the counts of every lit tile when the level is small, else of a
deterministic sample of its tiles (`sampled`: about SAMPLE_TILES, picked by a hash of
the tile's x and y). How many tiles a level may light is estimated from the
activities' summaries (their length and ~10 km cells: `Plan`), so the build and the
server pick the same sample, and a sampled tile's counts are exact (count_region
counts every step that can reach it): tiles stay byte-equal.

Counting a region (`count_region`) takes only the steps of the tracks that can reach
its tiles, so a street-zoom tile costs the activities that touch it, not the level.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import tiles
from .heat import LOW, count_distribution, blur_tiles, legend_ticks, rank_heat
from .rasterize import count_tracks, select_points
from .summary import CELL_ZOOM
from .tiles import Bbox, Grid, TileKey

Sparse = dict[TileKey, np.ndarray]
# A level whose tiles may number more than this is ranked on a sample of about as many.
SAMPLE_TILES = 512


class Plan(NamedTuple):
    """What the sample size of each zoom is estimated from (the kept activities'
    summaries): their ground length, their ~10 km cells and the area's middle y."""

    length: float  # metres on the ground
    cells: int  # distinct summary cells (zoom CELL_ZOOM tiles) the activities visit
    middle_y: float  # EPSG:3857 y of the area's middle


def plan_of(summaries, area: Bbox) -> Plan:
    """The Plan of the activities drawn (their summaries) over area: only their ~10 km
    cells that reach it, and their length in the share of their points there. What
    else the input holds (another city, a trip abroad) left how a level is sampled, and
    so its colours, to change (chengdu-runs alone and among other sets: 0.05 apart)."""
    length, reached = 0.0, []
    for summary in summaries:
        if summary is None or not len(summary.cells):
            continue
        b = summary.cell_bounds
        inside = ((b[:, 0] <= area.right) & (b[:, 2] >= area.left)
                  & (b[:, 1] <= area.top) & (b[:, 3] >= area.bottom))
        if inside.any():
            reached.append(summary.cells[inside])
            share = summary.cell_points[inside].sum() / max(summary.cell_points.sum(), 1)
            length += summary.length * float(share)
    cells = np.unique(np.concatenate(reached)) if reached else ()
    return Plan(length, len(cells), (area.bottom + area.top) / 2)


def most_tiles(plan: Plan, zoom: int) -> float:
    """About how many tiles the level at zoom may light: the tracks' length over a tile's
    ground width, and at most the cells' tiles at that zoom."""
    ground = tiles.resolution(zoom) * tiles.TILE_SIZE / math.cosh(plan.middle_y
                                                                  / tiles.EARTH_RADIUS)
    return min(plan.length / ground + 1, plan.cells * 4.0 ** max(zoom - CELL_ZOOM, 0))


def modulus(plan: Plan, zoom: int) -> int:
    """1 in how many tiles of the level at zoom its distribution is made from (1: all)."""
    return max(1, math.ceil(most_tiles(plan, zoom) / SAMPLE_TILES))


def sample_of(counts: Sparse, m: int) -> Sparse:
    """The counts of the tiles in the 1-in-m sample."""
    if m <= 1:
        return counts
    keys = list(counts)
    keep = sampled(np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), m)
    if isinstance(counts, tiles.CellTiles):  # the sample's cells, no dense copy
        return counts.subset(key for key, kept in zip(keys, keep) if kept)
    return {key: counts[key] for key, kept in zip(keys, keep) if kept}


def sampled(tx: np.ndarray, ty: np.ndarray, m: int) -> np.ndarray:
    """Whether tiles (x, y) are in the 1-in-m sample (a hash of x and y: spread evenly)."""
    if m <= 1:
        return np.ones(np.shape(tx), dtype=bool)
    h = (np.asarray(tx, np.uint64) * np.uint64(0x9E3779B1)
         ^ np.asarray(ty, np.uint64) * np.uint64(0x85EBCA77))
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    return (h % np.uint64(m)) == 0


class Scale(NamedTuple):
    """A level's global scaling: the distinct counts of its (sampled) lit pixels and the
    heat each is drawn with; `below`: the heat of a count between them (or beyond)."""

    scaling: str
    values: np.ndarray
    heats: np.ndarray
    below: np.ndarray  # (len(values) + 1,): heat of a count just above values[i - 1]
    top: int  # linear: the largest count
    ticks: tuple  # the legend: (heat, count) pairs


def make_scale(counts: Sparse, scaling: str) -> Scale:
    """The Scale of a level from the counts of its (sampled) lit tiles: rank_heat of
    each count (cdf), or count / the largest (linear)."""
    values, freq = count_distribution(counts)
    ticks = tuple(legend_ticks(counts, scaling))
    top = int(values[-1]) if len(values) else 1
    if scaling == "linear":
        return Scale(scaling, values, (values / top).astype(np.float32),
                     np.zeros(0, np.float32), top, ticks)
    total = max(float(freq.sum()), 1.0)
    before = np.concatenate([[0.0], np.cumsum(freq, dtype=np.float64)]) / total
    return Scale(scaling, values, rank_heat(freq),
                 (LOW + (1 - LOW) * before).astype(np.float32), top, ticks)


def apply_scale(counts: Sparse, scale: Scale) -> Sparse:
    """Counts to heat by a level's Scale (as heat.cdf_scale_tiles / linear_scale_tiles
    do with the whole level's distribution; a count the sample lacks gets the share
    below it)."""
    if scale.scaling == "linear":
        return tiles.map_pixels(
            counts, lambda block: np.minimum(block.astype(np.float32) / scale.top,
                                             np.float32(1)), np.float32)

    def per_pixel(block):
        heat = np.zeros(block.shape, dtype=np.float32)
        mask = block > 0
        lit = block[mask]
        at = np.searchsorted(scale.values, lit)
        near = np.minimum(at, max(len(scale.values) - 1, 0))
        if len(scale.values):
            exact = scale.values[near] == lit
            heat[mask] = np.where(exact, scale.heats[near], scale.below[at])
        else:
            heat[mask] = scale.below[0]
        return heat

    return tiles.map_pixels(counts, per_pixel, np.float32)


def scaled(counts: Sparse, grid: Grid, scale: Scale | None) -> Sparse:
    """Counts to heat: by the level's Scale, or (None) by local contrast."""
    if scale is None:
        from .contrast import local_scale_tiles

        return local_scale_tiles(counts, grid)
    return apply_scale(counts, scale)


def level_scale(counts: Sparse, grid: Grid, scaling: str, normalize: str,
                plan: Plan) -> Scale | None:
    """The level's Scale from its whole counts (the build): the sampled tiles' counts
    (all of them when the level is small); None under --normalize local."""
    if normalize == "local":
        return None
    return make_scale(sample_of(counts, modulus(plan, grid.zoom)), scaling)


def level_heat(counts: Sparse, grid: Grid, scale: Scale | None, sigma: float,
               only=None) -> Sparse:
    """A level's heat: scaled, then blurred (only: the tiles wanted, None: all)."""
    return blur_tiles(scaled(counts, grid, scale), sigma, grid, only=only)


def scaler(scaling: str, normalize: str, plan: Plan) -> Callable[[Sparse, Grid], Sparse]:
    """Counts on a level's grid to heat, the same at every level, for pyramid.levels."""
    return lambda counts, grid: scaled(counts, grid,
                                       level_scale(counts, grid, scaling, normalize, plan))


def point_tiles(xy: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Each point's tile x and y at zoom."""
    col, row = tiles.world_pixels(xy, zoom)
    size = tiles.TILE_SIZE
    return (np.floor(col).astype(np.int64) // size, np.floor(row).astype(np.int64) // size)


def count_region(xy: np.ndarray, segments: np.ndarray, mode: str, grid: Grid,
                 wanted: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 privacy=None, ends: np.ndarray | None = None) -> Sparse:
    """The level's counts on the tiles `wanted(tx, ty)` marks, exactly as counting the
    whole level gives them, from the steps that can reach those tiles only.

    segments: the tracks' segment offsets, already split at gaps (rasterize.split_gaps).
    A step is kept when the box of its ends' tiles holds a wanted tile (a step longer
    than a tile, always); a kept run then starts at a point outside the wanted tiles
    (or at its segment's start), so every wanted pixel is entered as in the whole count.
    privacy (lines): a privacy.Privacy whose samples are not counted (ends: each point's
    privacy.end_distances, or None), as rasterize.count_activity hides them.
    """
    if not len(xy):
        return {}
    tx, ty = point_tiles(xy, grid.zoom)
    size = tiles.TILE_SIZE
    gx0, gy0 = grid.col_off // size, grid.row_off // size
    gx1, gy1 = gx0 + grid.width // size, gy0 + grid.height // size

    def want(x, y):
        return (x >= gx0) & (x < gx1) & (y >= gy0) & (y < gy1) & wanted(x, y)

    keep = want(tx, ty)
    if mode == "lines" and len(xy) > 1:
        last = np.zeros(len(xy), dtype=bool)
        last[np.asarray(segments[1:]) - 1] = True
        ax, ay, bx, by = tx[:-1], ty[:-1], tx[1:], ty[1:]
        step = (np.abs(ax - bx) > 1) | (np.abs(ay - by) > 1) | keep[:-1] | keep[1:]
        corner = np.flatnonzero(~step & (ax != bx) & (ay != by))  # the box's other tiles
        step[corner] = want(ax[corner], by[corner]) | want(bx[corner], ay[corner])
        step &= ~last[:-1]
        keep[:-1] |= step
        keep[1:] |= step
    if not keep.any():
        return {}
    part, offsets = (xy, segments) if keep.all() else select_points(xy, segments, keep)
    hidden = None
    if privacy is not None:
        from .privacy import SampleFilter

        hidden = SampleFilter(part, None if ends is None else ends[keep], privacy)
    counts = count_tracks(part, offsets, grid, mode, gaps_split=True, hidden=hidden)
    if not counts:
        return {}
    keys = list(counts)
    ok = want(np.array([k[0] for k in keys]), np.array([k[1] for k in keys]))
    return {key: counts[key] for key, good in zip(keys, ok) if good}
