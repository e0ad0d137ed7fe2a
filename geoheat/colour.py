"""Heat to colours: through a colormap's lookup table, alone or over a toned basemap."""

import numpy as np

from . import font
from .colormaps import Style


def lut_index(heat: np.ndarray) -> np.ndarray:
    """Heat in [0, 1] as a uint8 index into a 256-entry lookup table."""
    return np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)


def shade(heat: np.ndarray, lut: np.ndarray, background=(0, 0, 0)) -> np.ndarray:
    """Colour heat through a (256, 3) uint8 lookup table over a background: (3, h, w) uint8."""
    index = lut_index(heat)
    empty = heat <= 0
    rgb = np.empty((3, *heat.shape), dtype=np.uint8)
    for band in range(3):  # one channel at a time: 3x faster than lut[index] on big images
        np.take(lut[:, band], index, out=rgb[band])
        rgb[band][empty] = background[band]
    return rgb


def shade_over(heat: np.ndarray, rgba_lut: np.ndarray, background) -> np.ndarray:
    """Colour heat through a (256, 4) table laid over a plain background by its alpha:
    (3, h, w) uint8. A light style's picture: its fringe fades into the ground."""
    flat = np.empty((3, *heat.shape), dtype=np.uint8)
    for band in range(3):
        flat[band] = background[band]
    return blend_over(flat, shade_rgba(heat, rgba_lut))


def shade_strips(heat, lut: np.ndarray, background=(0, 0, 0),
                 rgba_lut: np.ndarray | None = None) -> np.ndarray:
    """shade (or with rgba_lut, shade_over), made STRIP_ROWS rows at a time from anything
    sliced by rows (a dense array, or tiles.RowView over sparse tiles): the float
    temporaries cost a strip."""
    height, width = heat.shape
    rgb = np.empty((3, height, width), dtype=np.uint8)
    for top in range(0, height, STRIP_ROWS):
        rows = slice(top, top + STRIP_ROWS)
        rgb[:, rows] = (shade(heat[rows], lut, background) if rgba_lut is None
                        else shade_over(heat[rows], rgba_lut, background))
    return rgb


def shade_rgba(heat: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Colour heat through a (256, 4) lookup table: (4, h, w) uint8, transparent without heat.

    Heat that rounds to index 0 (below 1/510) is transparent too.
    """
    index = lut_index(heat)
    rgba = np.empty((4, *heat.shape), dtype=np.uint8)
    for band in range(4):
        np.take(lut[:, band], index, out=rgba[band])
    return rgba


# The picture over a map is made this many rows at a time, so its float temporaries
# cost a strip, not the whole image (a 4096 px square image: ~50 MB, not 800 MB).
STRIP_ROWS = 256


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]).astype(np.float32)


def is_light(rgb: np.ndarray, have: np.ndarray) -> bool:
    """Whether a map is light (its mean grey where there is map above half), in strips."""
    total, count = 0.0, 0
    for top in range(0, rgb.shape[1], STRIP_ROWS):
        strip = slice(top, top + STRIP_ROWS)
        total += float(_grey(rgb[:, strip])[have[strip]].sum())
        count += int(have[strip].sum())
    return count > 0 and total / count > 127.5


def tone_map(rgb: np.ndarray, have: np.ndarray, brightness: float, tint, background,
             invert: bool | None = None):
    """A map made a dark grey backdrop: (3, h, w) uint8.

    Grey by luminance; a light map (mean grey above half; or as `invert` says) is
    inverted so roads stay visible on a dark ground; then dimmed and tinted. Pixels
    without map (have False) get the background colour.
    """
    grey = _grey(rgb)
    if invert is None:
        invert = bool(have.any() and grey[have].mean() > 127.5)
    if invert:
        grey = 255 - grey
    out = np.empty(rgb.shape, dtype=np.uint8)
    for band in range(3):
        toned = grey * (brightness * tint[band])
        out[band] = np.where(have, np.clip(np.rint(toned), 0, 255), background[band])
    return out


def lighten_map(rgb: np.ndarray, have: np.ndarray, fade: float, background,
                invert: bool = False) -> np.ndarray:
    """A map made a pale grey ground for a light style: (3, h, w) uint8. Grey by
    luminance (a dark map inverted, so land stays light), its distance from white
    scaled by `fade`; pixels without map get the background colour."""
    grey = _grey(rgb)
    if invert:
        grey = 255 - grey
    pale = np.clip(np.rint(255 - (255 - grey) * fade), 0, 255)
    out = np.empty(rgb.shape, dtype=np.uint8)
    for band in range(3):
        out[band] = np.where(have, pale, background[band])
    return out


def blend_over(base: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Heat colours (4, h, w) laid over a backdrop (3, h, w) by their alpha ('over')."""
    alpha = rgba[3].astype(np.float32) / 255
    out = base.astype(np.float32) * (1 - alpha) + rgba[:3].astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blend_screen(base: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Heat colours (4, h, w) over a backdrop (3, h, w) by 'screen' blending, weighted by alpha.

    Screen (1 - (1 - a)(1 - b)) only ever lightens: dark heat leaves the map as it
    is, bright heat glows, as in the original script.
    """
    colour = rgba[:3].astype(np.float32) * (rgba[3].astype(np.float32) / 255)
    base = base.astype(np.float32)
    return np.clip(np.rint(base + colour - base * colour / 255), 0, 255).astype(np.uint8)


def over_map(heat: np.ndarray, rgb: np.ndarray, have: np.ndarray, look: Style,
             lut: np.ndarray, rgba_lut: np.ndarray, attribution: str = "") -> np.ndarray:
    """The PNG's picture over a basemap: the heat screen-blended over the toned map (a
    light style: laid over the pale map), with
    the map's attribution stamped bottom-right where there is a map.

    Where a map tile is missing the heat is shaded as on a plain background, so a
    failed basemap hides nothing. Made in strips, in place of rgb (which it returns).
    """
    invert = is_light(rgb, have)
    picture = rgb
    for top in range(0, heat.shape[0], STRIP_ROWS):
        rows = slice(top, top + STRIP_ROWS)
        strip_heat, strip_have = heat[rows], have[rows]
        if look.light:  # a light map kept light (a dark one inverted), the heat laid over
            backdrop = lighten_map(rgb[:, rows], strip_have, look.map_brightness,
                                   look.background, not invert)
            strip = blend_over(backdrop, shade_rgba(strip_heat, rgba_lut))
        else:
            backdrop = tone_map(rgb[:, rows], strip_have, look.map_brightness, look.map_tint,
                                look.background, invert)
            strip = blend_screen(backdrop, shade_rgba(strip_heat, rgba_lut))
        if not strip_have.all():
            plain = ~strip_have
            flat = (shade_over(strip_heat, rgba_lut, look.background) if look.light
                    else shade(strip_heat, lut, look.background))
            strip[:, plain] = flat[:, plain]
        picture[:, rows] = strip
    if attribution and have.any():
        font.stamp(picture, attribution, scale=1 if heat.shape[1] < 1200 else 2)
    return picture

