"""Colormaps as 256-entry lookup tables, and the styles that pair them with a map tone.

No plotting library is needed at run time: viridis, magma, inferno and plasma
(CC0, by Stefan van der Walt and Nathaniel Smith) are stored as 17 anchors each,
sampled from their published tables and interpolated linearly.
"""

from typing import NamedTuple

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
    """A (256, 4) table: lut's colours, opaque from fade_in up; index 0 is (0, 0, 0, 0),
    as are tiles with no heat at all."""
    ramp = np.clip(np.arange(256) / (fade_in * 255), 0, 1)
    alpha = np.where(np.arange(256) == 0, 0, np.maximum(np.rint(ramp * 255), 1))
    table = np.column_stack([lut, alpha.astype(np.uint8)])
    table[0] = 0
    return table


# matplotlib's 'hot', the original script's colormap: black, red, yellow, white.
HOT = from_segments(
    red=[(0.0, 0.0416), (0.365079, 1.0), (1.0, 1.0)],
    green=[(0.0, 0.0), (0.365079, 0.0), (0.746032, 1.0), (1.0, 1.0)],
    blue=[(0.0, 0.0), (0.746032, 0.0), (1.0, 1.0)],
)



def from_anchors(colours) -> np.ndarray:
    """A (256, 3) uint8 table through evenly spaced (r, g, b) anchors, 0-255."""
    anchors = np.asarray(colours, dtype=float)
    x = np.linspace(0.0, 1.0, len(anchors))
    return from_segments(*[list(zip(x, anchors[:, c] / 255)) for c in range(3)])


VIRIDIS = from_anchors([
    (68, 1, 84), (72, 24, 106), (71, 45, 123), (66, 64, 134), (59, 82, 139), (51, 99, 141),
    (44, 114, 142), (38, 130, 142), (33, 145, 140), (31, 160, 136), (40, 174, 128),
    (63, 188, 115), (94, 201, 98), (132, 212, 75), (173, 220, 48), (216, 226, 25),
    (253, 231, 37)])
MAGMA = from_anchors([
    (0, 0, 4), (10, 8, 34), (29, 17, 71), (54, 16, 107), (81, 18, 124), (106, 28, 129),
    (131, 38, 129), (156, 46, 127), (183, 55, 121), (208, 65, 111), (231, 82, 99),
    (245, 107, 92), (252, 137, 97), (254, 167, 114), (254, 196, 136), (253, 226, 163),
    (252, 253, 191)])
INFERNO = from_anchors([
    (0, 0, 4), (11, 7, 36), (33, 12, 74), (61, 9, 101), (87, 16, 110), (113, 25, 110),
    (138, 34, 106), (163, 44, 97), (188, 55, 84), (210, 70, 68), (228, 90, 49),
    (241, 115, 29), (249, 142, 9), (252, 172, 17), (249, 203, 53), (242, 234, 105),
    (252, 255, 164)])
PLASMA = from_anchors([
    (13, 8, 135), (49, 5, 151), (76, 2, 161), (102, 0, 167), (126, 3, 168), (149, 17, 161),
    (170, 35, 149), (188, 53, 135), (204, 71, 120), (218, 90, 106), (230, 108, 92),
    (240, 128, 78), (248, 149, 64), (253, 172, 51), (253, 197, 39), (248, 223, 37),
    (240, 249, 33)])
# Strava's heatmap orange, from a dark ember to a pale glow at the busiest roads.
STRAVA = from_anchors([(40, 8, 0), (160, 40, 0), (252, 76, 2), (255, 150, 40), (255, 235, 190)])

COLORMAPS = {"hot": HOT, "strava": STRAVA, "viridis": VIRIDIS, "magma": MAGMA,
             "inferno": INFERNO, "plasma": PLASMA}


class Style(NamedTuple):
    """A look: the heat's colormap and how the map under it is toned."""

    cmap: str
    map_brightness: float  # the grey map's brightness, 0-1, after darkening
    map_tint: tuple[float, float, float]  # per-channel factor on the grey map
    background: tuple[int, int, int]  # where there is no map


STYLES = {
    # The original script's look: the map grey, inverted and dimmed, 'hot' heat.
    "hot": Style("hot", 0.6, (1.0, 1.0, 1.0), (0, 0, 0)),
    # Strava's: orange heat on a dark, slightly cool map.
    "strava": Style("strava", 0.45, (0.85, 0.92, 1.0), (10, 12, 16)),
}
