"""A small summary of each activity's track, enough for a build's first look.

Choosing the extent and zoom, and finding duplicates, needs every activity but not
every point: where it starts and ends, how long it is, and which ~10 km cells it
visits (with the bounds and number of its points in each). The summary is made once
when a file is parsed and kept in the parse cache, so a build can take that first
look without holding all the points, and count them one activity at a time after.
"""

from typing import NamedTuple

import numpy as np

from . import tiles

# Cells of the zoom-12 tile grid (about 10 km at the equator) group tracks into
# areas for the default extent: tracks are continuous, so one area's tracks share
# neighbouring cells, while a GPS glitch or a trip elsewhere does not.
CELL_ZOOM = 12
CELLS_ACROSS = 2**CELL_ZOOM


class Summary(NamedTuple):
    """One activity's track in brief (EPSG:3857 metres)."""

    points: int
    first: tuple[float, float]
    last: tuple[float, float]
    length: float  # metres on the ground along the segments
    cells: np.ndarray  # (k,) int64 keys row * CELLS_ACROSS + col of the cells visited, sorted
    cell_points: np.ndarray  # (k,) int64 points in each
    cell_bounds: np.ndarray  # (k, 4) float64 left, bottom, right, top of those points

    @property
    def bounds(self) -> tiles.Bbox:
        """The bounding box of all the points."""
        b = self.cell_bounds
        return tiles.Bbox(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())

    def to_json(self) -> dict:
        # Python's float repr round-trips exactly: the cached summary is bit for bit this one.
        return {"points": self.points, "first": list(self.first), "last": list(self.last),
                "length": self.length, "cells": self.cells.tolist(),
                "cell_points": self.cell_points.tolist(),
                "cell_bounds": self.cell_bounds.ravel().tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        return cls(int(data["points"]), tuple(data["first"]), tuple(data["last"]),
                   float(data["length"]), np.array(data["cells"], dtype=np.int64),
                   np.array(data["cell_points"], dtype=np.int64),
                   np.array(data["cell_bounds"], dtype=np.float64).reshape(-1, 4))


def cell_keys(xy: np.ndarray) -> np.ndarray:
    """Each point's cell at CELL_ZOOM, as row * CELLS_ACROSS + col."""
    col, row = tiles.world_pixels(xy, CELL_ZOOM)
    col = (col // tiles.TILE_SIZE).astype(np.int64)
    row = (row // tiles.TILE_SIZE).astype(np.int64)
    return row * CELLS_ACROSS + col


def ground_steps(xy: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Metres on the ground of each step from a point to the next (Web Mercator metres
    shrink by cosh(y/R)), computed as rasterize.split_gaps computes them; 0 for the
    step from one segment's end to the next one's start, which is no step."""
    if len(xy) < 2:
        return np.zeros(0)
    middle_y = (xy[1:, 1] + xy[:-1, 1]) / 2
    step = np.hypot(*np.diff(xy, axis=0).T) / np.cosh(middle_y / tiles.EARTH_RADIUS)
    ends = np.asarray(offsets)[1:-1]
    step[ends[(ends > 0) & (ends < len(xy))] - 1] = 0  # empty segments end nowhere
    return step


def ground_length(xy: np.ndarray, offsets: np.ndarray, steps: np.ndarray | None = None
                  ) -> float:
    """Metres on the ground along the segments; steps: their ground_steps, if known."""
    if len(xy) < 2:
        return 0.0
    return float((ground_steps(xy, offsets) if steps is None else steps).sum())


def summarize(xy: np.ndarray, offsets: np.ndarray, steps: np.ndarray | None = None
              ) -> Summary | None:
    """The summary of an activity's points (None when it has none); steps: their
    ground_steps, if the caller has them."""
    if not len(xy):
        return None
    keys = cell_keys(xy)
    order = np.argsort(keys, kind="stable")
    cells, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    x, y = xy[order, 0], xy[order, 1]
    bounds = np.column_stack([np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts),
                              np.maximum.reduceat(x, starts), np.maximum.reduceat(y, starts)])
    return Summary(len(xy), (float(xy[0, 0]), float(xy[0, 1])),
                   (float(xy[-1, 0]), float(xy[-1, 1])), ground_length(xy, offsets, steps),
                   cells.astype(np.int64), counts.astype(np.int64), bounds)
