"""Tracks to counts: which pixels each track passes through, summed per 256x256 tile.

Counts are sparse: a dict from tile key (x, y) to the (256, 256) uint32 counts of
each tile that holds data, so memory follows the area the tracks cover, not their
bounding box.
"""

import numpy as np

from . import tiles
from .tiles import Grid, TileKey

# Consecutive points further apart than this (on the ground) are not joined in lines
# mode: the GPS was off, or lost, in between. At 1-10 s recording intervals even a fast
# descent moves less; a tunnel shorter than this is drawn straight through, as ridden.
MAX_STEP_METRES = 300.0


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


def split_gaps(xy: np.ndarray, offsets: np.ndarray, max_step: float = MAX_STEP_METRES):
    """Segment offsets with a new segment wherever consecutive points are > max_step m apart.

    Distances are on the ground: Web Mercator metres shrink by cosh(y / R).
    """
    if len(xy) < 2:
        return offsets
    step = np.hypot(*np.diff(xy, axis=0).T)
    middle_y = (xy[1:, 1] + xy[:-1, 1]) / 2
    ground = step / np.cosh(middle_y / tiles.EARTH_RADIUS)
    breaks = np.flatnonzero(ground > max_step) + 1
    return np.union1d(offsets, breaks).astype(np.int64)


def point_pixels(xy: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """World row and column of each point's pixel at zoom."""
    col, row = tiles.world_pixels(xy, zoom)
    return np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)


def line_pixels(xy: np.ndarray, offsets: np.ndarray, zoom: int):
    """World rows and columns the segments pass through at zoom, once per pass.

    Each step between consecutive points is sampled at most one pixel apart, so
    every segment is an unbroken 8-connected line; a pixel is listed each time a
    segment enters it (so a road ridden twice counts 2). Vectorised: no loop over points.
    """
    if not len(xy):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    px = np.column_stack(tiles.world_pixels(xy, zoom))
    segment = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    last_in_segment = np.zeros(len(xy), dtype=bool)
    last_in_segment[offsets[1:] - 1] = True
    # Step i goes from point i to point i + 1; a segment's last point is a zero-length step.
    end = np.where(last_in_segment, np.arange(len(xy)), np.arange(len(xy)) + 1)
    delta = px[end] - px
    longest = np.maximum(np.abs(delta[:, 0]), np.abs(delta[:, 1]))
    samples = np.maximum(np.ceil(longest), 1).astype(np.int64)
    step_of = np.repeat(np.arange(len(xy)), samples)
    first = np.cumsum(samples) - samples
    t = (np.arange(samples.sum()) - np.repeat(first, samples)) / np.repeat(samples, samples)
    cols = np.floor(px[step_of, 0] + t * delta[step_of, 0]).astype(np.int64)
    rows = np.floor(px[step_of, 1] + t * delta[step_of, 1]).astype(np.int64)
    seg = segment[step_of]
    entered = np.ones(len(rows), dtype=bool)
    entered[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1]) | (seg[1:] != seg[:-1])
    return rows[entered], cols[entered]


def tile_counts(rows: np.ndarray, cols: np.ndarray, grid: Grid) -> dict[TileKey, np.ndarray]:
    """Sparse counts: for each tile of the grid with data, its (256, 256) uint32 counts.

    rows and cols are world pixel indices, one entry per count; entries outside the
    grid are dropped.
    """
    size = tiles.TILE_SIZE
    inside = ((rows >= grid.row_off) & (rows < grid.row_off + grid.height)
              & (cols >= grid.col_off) & (cols < grid.col_off + grid.width))
    rows, cols = rows[inside], cols[inside]
    tiles_across = 2**grid.zoom
    key = (rows // size) * tiles_across + cols // size
    flat = key * (size * size) + (rows % size) * size + cols % size
    pixels, counts = np.unique(flat, return_counts=True)
    if not len(pixels):
        return {}
    keys = pixels // (size * size)
    result = {}
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for part_pixels, part_counts in zip(np.split(pixels, bounds), np.split(counts, bounds)):
        tile_key = int(part_pixels[0] // (size * size))
        block = np.zeros(size * size, dtype=np.uint32)
        block[part_pixels % (size * size)] = part_counts
        result[(tile_key % tiles_across, tile_key // tiles_across)] = block.reshape(size, size)
    return result


def count_tracks(xy: np.ndarray, offsets: np.ndarray, grid: Grid,
                 mode: str = "lines") -> dict[TileKey, np.ndarray]:
    """Sparse counts of tracks over a grid: passes per pixel ('lines': each track drawn
    between its points, broken at GPS gaps) or track points per pixel ('points')."""
    if mode == "lines":
        rows, cols = line_pixels(xy, split_gaps(xy, offsets), grid.zoom)
    else:
        rows, cols = point_pixels(xy, grid.zoom)
    return tile_counts(rows, cols, grid)
