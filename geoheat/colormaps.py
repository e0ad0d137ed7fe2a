"""Colormaps as 256-entry RGB lookup tables, so no plotting library is needed."""

import numpy as np


def from_segments(red, green, blue) -> np.ndarray:
    """A (256, 3) uint8 table from piecewise-linear (position, value) anchors per channel."""
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(x, *zip(*anchors)) for anchors in (red, green, blue)]
    return np.rint(np.column_stack(channels) * 255).astype(np.uint8)


# matplotlib's 'hot', the original script's colormap: black, red, yellow, white.
HOT = from_segments(
    red=[(0.0, 0.0416), (0.365079, 1.0), (1.0, 1.0)],
    green=[(0.0, 0.0), (0.365079, 0.0), (0.746032, 1.0), (1.0, 1.0)],
    blue=[(0.0, 0.0), (0.746032, 0.0), (1.0, 1.0)],
)

COLORMAPS = {"hot": HOT}
