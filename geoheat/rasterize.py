"""Tracks to counts: which pixels each track passes through, summed per 256x256 tile.

Counts are sparse: a dict from tile key (x, y) to the (256, 256) uint32 counts of
each tile that holds data, so memory follows the area the tracks cover, not their
bounding box.
"""

from typing import NamedTuple

import numpy as np

from . import tiles
from .errors import ParameterError
from .summary import ground_steps
from .tiles import Grid, TileKey

# Lines mode joins consecutive points unless the step between them is a real break:
# - a jump faster than any vehicle on the ground (a GPS glitch, a flight);
# - a recording pause: a long time step over which the position moved (paused, then
#   carried on elsewhere);
# - without times, only a jump no track simplification makes.
# A step that is merely long (a track thinned to a few hundred points: 600 m steps)
# is a line: it is drawn.
MAX_GROUND_SPEED = 100.0  # m/s: 360 km/h
MAX_PAUSE_SECONDS = 300.0
MIN_GAP_METRES = 300.0  # shorter steps are always drawn: GPS noise, a stop at a light
MAX_UNTIMED_STEP_METRES = 50_000.0
# What the later stages hold per tile with heat (counts, scaled and blurred heat with
# the blur's halo, colours): a build needing more tiles than fit in memory is refused
# before the tiles are made. And per sample of a line (the arrays of line_pixels).
BYTES_PER_DATA_TILE = 3 * 2**19
BYTES_PER_LINE_SAMPLE = 64
TILE_BITS = tiles.TILE_SIZE.bit_length() - 1  # tiles are 2**TILE_BITS pixels a side


class TooBig(ParameterError):
    """A build that would need more memory than the machine has."""


def select_points(xy: np.ndarray, offsets: np.ndarray, keep: np.ndarray):
    """Keep the points where keep is True; a segment is cut where points were dropped.

    Returns the kept (n, 2) points and their segment offsets.
    """
    segment_start = np.zeros(len(xy), dtype=bool)
    segment_start[offsets[:-1][offsets[:-1] < len(xy)]] = True
    # A kept point starts a segment if its segment starts there or its predecessor went.
    after_gap = np.concatenate([[True], ~keep[:-1]]) if len(xy) else segment_start
    starts = (segment_start | after_gap)[keep]
    return xy[keep], np.append(np.flatnonzero(starts), starts.size).astype(np.int64)


def split_gaps(xy: np.ndarray, offsets: np.ndarray, times: np.ndarray | None = None):
    """Segment offsets with a new segment at every real break between consecutive points
    (see MAX_GROUND_SPEED, MAX_PAUSE_SECONDS, MAX_UNTIMED_STEP_METRES).

    times: each point's POSIX seconds, NaN where unknown (None: no times). Distances
    are on the ground: Web Mercator metres shrink by cosh(y / R).
    """
    if len(xy) < 2:
        return offsets
    # 0 across a segment boundary: already a break, whatever the rule says of it.
    ground = ground_steps(xy, offsets)
    if times is None:
        times = np.full(len(xy), np.nan)
    dt = np.diff(times)
    timed = np.isfinite(dt)
    with np.errstate(invalid="ignore"):
        too_fast = timed & (ground > MAX_GROUND_SPEED * np.maximum(dt, 0))
        paused = timed & (dt > MAX_PAUSE_SECONDS)
    gap = ((too_fast | paused) & (ground > MIN_GAP_METRES)) | (
        ~timed & (ground > MAX_UNTIMED_STEP_METRES))
    breaks = np.flatnonzero(gap) + 1
    return np.union1d(offsets, breaks).astype(np.int64)


def point_pixels(xy: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """World row and column of each point's pixel at zoom."""
    col, row = tiles.world_pixels(xy, zoom)
    return np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)


def line_pixels(xy: np.ndarray, offsets: np.ndarray, zoom: int,
                memory: int | None = None, hidden=None):
    """World rows and columns the segments pass through at zoom, once per pass.

    Each step between consecutive points is sampled at most one pixel apart, so
    every segment is an unbroken 8-connected line; a pixel is listed each time a
    segment enters it (so a road ridden twice counts 2). Vectorised: no loop over points.
    memory: bytes the samples may take (TooBig beyond it); None: no limit. hidden: a
    privacy.SampleFilter: the samples it hides are not counted (the others as before).
    """
    if not len(xy):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    n = len(xy)
    col, row = tiles.world_pixels(xy, zoom)
    # Step i goes from point i to point i + 1; a segment's last point is a zero-length
    # step (its delta 0, as px[i] - px[i] is).
    dcol, drow = np.zeros(n), np.zeros(n)
    np.subtract(col[1:], col[:-1], out=dcol[:-1])
    np.subtract(row[1:], row[:-1], out=drow[:-1])
    last = offsets[1:] - 1
    dcol[last] = 0
    drow[last] = 0
    longest = np.maximum(np.abs(dcol), np.abs(drow))
    samples = np.maximum(np.ceil(longest), 1).astype(np.int64)
    total = int(samples.sum())
    if memory is not None and total * BYTES_PER_LINE_SAMPLE > memory:
        raise TooBig(f"the tracks are {total:,} pixels long at zoom {zoom}, "
                     f"more than fit in the {memory / 2**30:.1f} GB of memory free: "
                     "lower --zoom or narrow --bounds")
    first = np.cumsum(samples) - samples  # each step's first sample
    if total == n:  # every step within a pixel: one sample a point, at t = 0 (px itself)
        step_of, t = None, None
        cols = np.floor(col).astype(np.int64)
        rows = np.floor(row).astype(np.int64)
    else:  # np.repeat, not fancy indexing: the same values, at a third of the cost
        step_of = np.repeat(np.arange(n), samples)
        t = (np.arange(total) - np.repeat(first, samples)) / np.repeat(samples, samples)
        cols = np.floor(np.repeat(col, samples) + t * np.repeat(dcol, samples)).astype(np.int64)
        rows = np.floor(np.repeat(row, samples) + t * np.repeat(drow, samples)).astype(np.int64)
    # A sample enters its pixel when the one before lay in another pixel, or belongs to
    # another segment (each segment's first sample).
    entered = np.empty(total, dtype=bool)
    entered[0] = True
    np.not_equal(rows[1:], rows[:-1], out=entered[1:])
    entered[1:] |= cols[1:] != cols[:-1]
    starts = offsets[1:-1]
    entered[first[starts[starts < n]]] = True
    if hidden is not None:
        if step_of is None:
            step_of, t = np.arange(n), np.zeros(n)
        entered &= ~hidden(step_of, _step_ends(offsets, n)[step_of], t)
    return rows[entered], cols[entered]


def _step_ends(offsets: np.ndarray, n: int) -> np.ndarray:
    """The point each step ends at: the next one, or itself for a segment's last."""
    end = np.arange(1, n + 1)
    last = offsets[1:] - 1
    end[last] = np.arange(n)[last]
    return end


def tile_counts(rows: np.ndarray, cols: np.ndarray, grid: Grid, memory: int | None = None,
                into: dict[TileKey, np.ndarray] | None = None) -> dict[TileKey, np.ndarray]:
    """Sparse counts: for each tile of the grid with data, its (256, 256) uint32 counts.

    rows and cols are world pixel indices, one entry per count; entries outside the
    grid are dropped. into: sparse counts to add these to (in place, and returned): a
    build counting one activity at a time makes no blocks of its own per activity.
    memory: bytes the build's tiles may take (see BYTES_PER_DATA_TILE; TooBig beyond
    it, before any tile is made); None: no limit.
    """
    result = {} if into is None else into
    size = tiles.TILE_SIZE
    inside = ((rows >= grid.row_off) & (rows < grid.row_off + grid.height)
              & (cols >= grid.col_off) & (cols < grid.col_off + grid.width))
    if not inside.all():
        rows, cols = rows[inside], cols[inside]
    # Each entry's tile (row * tiles across + column) and pixel in it, as one number:
    # tiles are 2**8 pixels a side and the world 2**zoom tiles, so shifts and masks
    # (world pixels are never negative).
    shift = TILE_BITS
    flat = ((rows >> shift) << (grid.zoom + 2 * shift)) | ((cols >> shift) << (2 * shift))
    flat |= ((rows & (size - 1)) << shift) | (cols & (size - 1))
    pixels, counts = np.unique(flat, return_counts=True)
    if not len(pixels):
        return result
    tile_of = pixels >> (2 * shift)
    bounds = np.flatnonzero(tile_of[1:] != tile_of[:-1]) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), len(pixels)]
    across = 2**grid.zoom
    keys = [(tile % across, tile // across) for tile in tile_of[starts].tolist()]
    tiles_after = len(result) + sum(key not in result for key in keys)
    if memory is not None and tiles_after * BYTES_PER_DATA_TILE > memory:
        raise TooBig(f"the heat lies in {tiles_after:,} tiles at zoom {grid.zoom}, about "
                     f"{tiles_after * BYTES_PER_DATA_TILE / 2**30:.1f} GB of memory, more "
                     f"than the {memory / 2**30:.1f} GB free: lower --zoom or narrow --bounds")
    within = pixels & (size * size - 1)
    counts = counts.astype(np.uint32)
    for key, start, end in zip(keys, starts, ends):
        block = result.get(key)
        if block is None:
            block = result[key] = np.zeros((size, size), dtype=np.uint32)
        block.reshape(-1)[within[start:end]] += counts[start:end]
    return result


def add_counts(total: dict[TileKey, np.ndarray], counts: dict[TileKey, np.ndarray],
               grid: Grid, memory: int | None = None) -> None:
    """Sum sparse counts into `total` (in place): the reduce of a build that counts one
    activity at a time. memory: bytes the build's tiles may take (TooBig beyond it)."""
    for key, block in counts.items():
        existing = total.get(key)
        if existing is None:
            total[key] = block
        else:
            existing += block
    if memory is not None and len(total) * BYTES_PER_DATA_TILE > memory:
        raise TooBig(f"the heat lies in over {len(total):,} tiles at zoom {grid.zoom}, about "
                     f"{len(total) * BYTES_PER_DATA_TILE / 2**30:.1f} GB of memory, more than "
                     f"the {memory / 2**30:.1f} GB free: lower --zoom or narrow --bounds")


def count_tracks(xy: np.ndarray, offsets: np.ndarray, grid: Grid, mode: str = "lines",
                 memory: int | None = None, times: np.ndarray | None = None,
                 into: dict[TileKey, np.ndarray] | None = None,
                 gaps_split: bool = False, hidden=None) -> dict[TileKey, np.ndarray]:
    """Sparse counts of tracks over a grid: passes per pixel ('lines': each track drawn
    between its points, broken at real gaps, see split_gaps) or track points per pixel
    ('points'). memory: the bytes the build may use (TooBig before more is taken); None:
    no limit. times: each point's POSIX seconds (NaN unknown), for the gaps. into:
    sparse counts to add to (see tile_counts). gaps_split: offsets are split_gaps'
    already (a track counted on several grids is split once). hidden: what privacy hides
    of the lines (a privacy.SampleFilter; points mode: drop the points first)."""
    if mode == "lines":
        segments = offsets if gaps_split else split_gaps(xy, offsets, times)
        rows, cols = line_pixels(xy, segments, grid.zoom, memory, hidden)
    else:
        rows, cols = point_pixels(xy, grid.zoom)
    return tile_counts(rows, cols, grid, memory, into)


class Drawn(NamedTuple):
    """What count_activity drew of one activity."""

    points: int  # its points drawn (inside the box, not hidden)
    hidden: int = 0  # its points hidden by privacy (geoheat.privacy)


def count_activity(parsed, box, grids, mode: str, memory: int | None,
                   counts: list[dict[TileKey, np.ndarray]], privacy=None) -> Drawn:
    """Add one parsed activity's points inside box (None: all) to the sparse counts on
    each of grids (the output's and the pyramid levels'): the map step of a build, the
    same on one machine and on a cluster's workers. privacy: a privacy.Privacy whose
    zones and hidden ends (measured on the whole activity) are not drawn (None: nothing)."""
    from .extent import inside

    xy, offsets, times = parsed.xy, parsed.offsets, parsed.times
    keep = inside(xy, box) if box is not None else np.ones(len(xy), dtype=bool)
    shown, hidden, hide = keep, 0, None
    if privacy is not None and privacy.active:
        from .privacy import SampleFilter, end_distances, hidden_points

        if mode == "lines":  # the gaps split on the whole track: its ends are the drawn ones
            offsets = split_gaps(xy, offsets, times)
        ends = end_distances(xy, offsets) if privacy.hide_ends > 0 else None
        own = hidden_points(xy, ends, privacy)
        hidden, shown = int(own.sum()), keep & ~own
        if mode == "lines":
            hide = SampleFilter(xy[keep], None if ends is None else ends[keep], privacy)
        else:
            keep = shown  # points mode: the hidden points go
    kept, offsets = select_points(xy, offsets, keep)
    times = times[keep] if times is not None else None
    # Gaps split once, for every grid (points mode does not use them; with privacy they
    # are split already, and cutting at the box adds breaks, never removes one).
    segments = offsets
    if mode == "lines" and hide is None:
        segments = split_gaps(kept, offsets, times)
    for grid, into in zip(grids, counts):
        count_tracks(kept, segments, grid, mode, memory, into=into, gaps_split=True,
                     hidden=hide)
    return Drawn(int(shown.sum()), hidden)


def cut_to_box(parsed, box, mode: str):
    """An activity's points inside box (None: all) and their segment offsets, split at
    real gaps in lines mode (points mode does not use them): the one cut of points to
    the box, the build's and geoheat serve's."""
    from .extent import inside

    keep = inside(parsed.xy, box) if box is not None else np.ones(len(parsed.xy), dtype=bool)
    xy, offsets = select_points(parsed.xy, parsed.offsets, keep)
    times = parsed.times[keep] if parsed.times is not None else None
    return xy, (split_gaps(xy, offsets, times) if mode == "lines" else offsets)
