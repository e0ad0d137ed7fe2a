"""Colormaps as 256-entry lookup tables, and the styles that pair them with a map tone.

viridis, magma, inferno and plasma are the published 256-entry tables (CC0, by
Stefan van der Walt and Nathaniel Smith) as the `cmap` package carries them;
'hot' is matplotlib's segment definition; 'strava' and 'light' are geoheat's own. Tables are
made on first use (numpy and cmap are imported then), so naming them costs nothing.
"""

import functools
from typing import NamedTuple

COLORMAP_NAMES = ("hot", "strava", "light", "viridis", "magma", "inferno", "plasma")
PUBLISHED = ("viridis", "magma", "inferno", "plasma")  # taken from the cmap package

# Heat below this is drawn more and more transparent in overlays (RGBA outputs, the QGIS
# style), so faint fringes do not lay dark halos over a basemap.
FADE_IN = 0.2

# matplotlib's 'hot', the original script's colormap: black, red, yellow, white.
HOT_SEGMENTS = (
    [(0.0, 0.0416), (0.365079, 1.0), (1.0, 1.0)],
    [(0.0, 0.0), (0.365079, 0.0), (0.746032, 1.0), (1.0, 1.0)],
    [(0.0, 0.0), (0.746032, 0.0), (1.0, 1.0)],
)
# Strava's heatmap orange, from a dark ember to a pale glow at the busiest roads.
STRAVA_ANCHORS = ((40, 8, 0), (160, 40, 0), (252, 76, 2), (255, 150, 40), (255, 235, 190))
# For light maps: ink that darkens with the passes, orange to red to a deep violet. Every
# colour from heat.LOW (the fewest passes) up has a WCAG contrast of at least 3.4:1 on
# OSM's land colour #F2EFE9; below LOW (the blur's fringe) the colour stays the fewest
# passes' and only its alpha fades, so lines get no dark outline.
LIGHT_LOW = 0.25  # heat.LOW (not imported: naming a colormap imports no numpy)
LIGHT_ANCHORS = ((LIGHT_LOW, (230, 70, 10)), (0.5, (205, 20, 40)), (0.75, (135, 0, 85)),
                 (1.0, (55, 0, 75)))


class Style(NamedTuple):
    """A look: the heat's colormap and how the map under it is toned."""

    cmap: str
    map_brightness: float  # the grey map's brightness, 0-1, after darkening
    map_tint: tuple[float, float, float]  # per-channel factor on the grey map
    background: tuple[int, int, int]  # where there is no map
    light: bool = False  # a light map under the heat, drawn over it (else screened on dark)
    text: tuple[int, int, int] = (240, 240, 240)  # the key's letters


STYLES = {
    # The original script's look: the map grey, inverted and dimmed, 'hot' heat.
    "hot": Style("hot", 0.6, (1.0, 1.0, 1.0), (0, 0, 0)),
    # Strava's: orange heat on a dark, slightly cool map.
    "strava": Style("strava", 0.45, (0.85, 0.92, 1.0), (10, 12, 16)),
    # For light basemaps (OSM's own colours, QGIS's white canvas): the map grey and pale,
    # the heat laid over it as ink, darker where busier.
    "light": Style("light", 0.55, (1.0, 1.0, 1.0), (242, 239, 233), light=True,
                   text=(30, 30, 30)),
}
STYLE_NAMES = tuple(STYLES)


def from_segments(red, green, blue):
    """A (256, 3) uint8 table from piecewise-linear (position, value) anchors per channel."""
    import numpy as np

    x = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(x, *zip(*anchors)) for anchors in (red, green, blue)]
    return np.rint(np.column_stack(channels) * 255).astype(np.uint8)


def from_anchors(colours):
    """A (256, 3) uint8 table through evenly spaced (r, g, b) anchors, 0-255."""
    import numpy as np

    anchors = np.asarray(colours, dtype=float)
    x = np.linspace(0.0, 1.0, len(anchors))
    return from_segments(*[list(zip(x, anchors[:, c] / 255)) for c in range(3)])


@functools.cache
def lut(name: str):
    """The (256, 3) uint8 table of a colormap in COLORMAP_NAMES (read-only)."""
    import numpy as np

    if name == "hot":
        table = from_segments(*HOT_SEGMENTS)
    elif name == "strava":
        table = from_anchors(STRAVA_ANCHORS)
    elif name == "light":
        anchors = ((0.0, LIGHT_ANCHORS[0][1]),) + LIGHT_ANCHORS
        table = from_segments(*[[(x, rgb[c] / 255) for x, rgb in anchors] for c in range(3)])
    elif name in PUBLISHED:
        from cmap import Colormap

        table = np.rint(Colormap(name).lut(256)[:, :3] * 255).astype(np.uint8)
    else:
        raise KeyError(f"no colormap {name!r}; there are {', '.join(COLORMAP_NAMES)}")
    table.flags.writeable = False  # shared by every caller through the cache
    return table


def with_alpha(table, fade_in: float = FADE_IN):
    """A (256, 4) table: the colours, opaque from fade_in up; index 0 is (0, 0, 0, 0),
    as are tiles with no heat at all."""
    import numpy as np

    ramp = np.clip(np.arange(256) / (fade_in * 255), 0, 1)
    alpha = np.where(np.arange(256) == 0, 0, np.maximum(np.rint(ramp * 255), 1))
    rgba = np.column_stack([table, alpha.astype(np.uint8)])
    rgba[0] = 0
    return rgba


def css_stops(name: str, stops: int = 17) -> list[str]:
    """A colormap as `stops` evenly spaced '#rrggbb' colours (heat 0 to 1): the page's
    legend bar (a CSS gradient through them)."""
    table = lut(name)
    return ["#%02x%02x%02x" % tuple(int(v) for v in table[round(i * 255 / (stops - 1))])
            for i in range(stops)]
