"""Colormaps as 256-entry lookup tables, so no plotting library is needed."""

import numpy as np

# Heat below this is drawn more and more transparent in overlays (RGBA outputs, the QGIS
# style), so faint fringes do not lay dark halos over a basemap.
FADE_IN = 0.2


def from_segments(red, green, blue) -> np.ndarray:
    """A (256, 3) uint8 table from piecewise-linear (position, value) anchors per channel."""
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(x, *zip(*anchors)) for anchors in (red, green, blue)]
    return np.rint(np.column_stack(channels) * 255).astype(np.uint8)


def with_alpha(lut: np.ndarray, fade_in: float = FADE_IN) -> np.ndarray:
    """A (256, 4) table: lut's colours, transparent at index 0, opaque from fade_in up."""
    ramp = np.clip(np.arange(256) / (fade_in * 255), 0, 1)
    alpha = np.where(np.arange(256) == 0, 0, np.maximum(np.rint(ramp * 255), 1))
    return np.column_stack([lut, alpha.astype(np.uint8)])


# matplotlib's 'hot', the original script's colormap: black, red, yellow, white.
HOT = from_segments(
    red=[(0.0, 0.0416), (0.365079, 1.0), (1.0, 1.0)],
    green=[(0.0, 0.0), (0.365079, 0.0), (0.746032, 1.0), (1.0, 1.0)],
    blue=[(0.0, 0.0), (0.746032, 0.0), (1.0, 1.0)],
)

COLORMAPS = {"hot": HOT}
