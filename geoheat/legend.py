"""The key to a heatmap coloured by rank: which passes its colours stand for.

The PNG gets a colour bar bottom-left with the pass counts at a few of its colours
(`add_legend`); the QGIS style's ramp items are those counts (`ramp_items`), each at
the heat its pixels are drawn with, so QGIS's layer panel and print layouts list
"N passes" with the colour the map has for them. Both come from heat.legend_ticks:
the PNG's labels are some of the style's items, at the same places. Under
--normalize local the heat is a rank among neighbours, so both say fewer/more.
"""

from typing import TYPE_CHECKING

import numpy as np

from . import font
from .colormaps import STYLES, lut
from .heat import LOW, legend_ticks

if TYPE_CHECKING:  # the key needs only how the heat is drawn: BuildOptions.drawing
    from .options import Drawing  # (a whole BuildOptions reads the same)

# The local ranks the QGIS style names (under --normalize local).
LOCAL_RANKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def unit(mode: str, n: int) -> str:
    """'1 pass', '12 passes' (lines mode); '1 track point', '3 track points' (points)."""
    noun = "pass" if mode == "lines" else "track point"
    return f"{n:,} {noun}" + ("" if n == 1 else ("es" if noun == "pass" else "s"))


def legend_scale(width: int) -> int:
    """How large the key is drawn (its font's and bar's multiple) on a picture `width`
    pixels wide: when the picture is fitted to a ~1000 px screen its letters keep the
    font's own 7 px (a 4096 px picture: scale 4, 28 px letters)."""
    return max(1, round(width / 1000))


def key_ticks(counts, options: "Drawing") -> tuple[list[tuple[float, str]], str]:
    """The (heat, text) ticks and title of the key: the counts heat.legend_ticks picks
    (the QGIS style's items), or fewer/more under local contrast."""
    what = "passes" if options.mode == "lines" else "track points"
    if options.normalize == "local":
        return [(LOW, "fewer"), (1.0, "more")], f"{what}, ranked nearby"
    return [(h, f"{n:,}") for h, n in legend_ticks(counts, options.scaling)], what


def add_legend(picture: np.ndarray, counts, options: "Drawing") -> None:
    """The PNG's key, bottom-left: the colour bar and the passes its colours stand for."""
    ticks, title = key_ticks(counts, options)
    draw(picture, lut(options.colormap), ticks, title, legend_scale(picture.shape[2]),
         STYLES[options.style].background, bar=192, text=STYLES[options.style].text)


def ramp_items(counts, options: "Drawing") -> list[tuple[float, str]]:
    """The QGIS style's ramp items, (heat, label): 'none' at 0, then each count of
    heat.legend_ticks at the heat its pixels have, labelled in passes (local contrast:
    by local rank)."""
    if options.normalize == "local":
        return [(0.0, "none")] + [(LOW + (1 - LOW) * p, f"rank {p:.0%} nearby")
                                  for p in LOCAL_RANKS]
    return [(0.0, "none")] + [(h, unit(options.mode, n))
                              for h, n in legend_ticks(counts, options.scaling)]


def draw(picture: np.ndarray, table: np.ndarray, ticks, title: str, scale: int = 1,
         background=(0, 0, 0), bar: int = 128, text=(240, 240, 240)) -> np.ndarray:
    """Draw a key bottom-left on a (3, h, w) picture, in place: a colour bar of the
    (256, 3) lookup table (heat 0 to 1, left to right, `bar` x scale pixels) over the
    title, with the labels of `ticks` ((heat, text) pairs, by heat) under their place on
    the bar, on a dimmed box.

    The last label (the most) is always drawn; the others from the left wherever they
    do not overlap a label already drawn nor the last: the middle ones stay.
    """
    pad, gap = 4 * scale, 2 * scale
    bar_w, bar_h = bar * scale, 8 * scale
    glyph_h = font.GLYPH_HEIGHT * scale
    labels = []
    for heat, label in ticks:
        width = font.text_size(label, scale)[0]
        left = int(round(min(max(heat * bar_w - width / 2, 0), bar_w - width)))
        labels.append((left, width, label))

    def apart(a, b):
        return a[0] + a[1] + 2 * scale <= b[0] or b[0] + b[1] + 2 * scale <= a[0]

    kept = labels[-1:]
    for label in labels[:-1]:
        if all(apart(label, other) for other in kept):
            kept.append(label)
    title_w = font.text_size(title, scale)[0]
    box_w = max(bar_w, title_w) + 2 * pad
    box_h = pad + glyph_h + gap + bar_h + gap + glyph_h + pad
    _, height, width = picture.shape
    if box_w > width or box_h > height:
        return picture  # too small a picture for a key
    top = height - box_h
    area = picture[:, top:, :box_w].astype(np.float32)
    area[:] = area * 0.35 + np.asarray(background, np.float32)[:, None, None] * 0.65
    y = pad
    _text(area, font.text_mask(title, scale), y, pad, text)
    y += glyph_h + gap
    index = np.rint(np.linspace(0, 255, bar_w)).astype(int)
    area[:, y:y + bar_h, pad:pad + bar_w] = table[index].T[:, None, :]
    y += bar_h + gap
    for left, _, label in kept:
        _text(area, font.text_mask(label, scale), y, pad + left, text)
    picture[:, top:, :box_w] = np.rint(area).astype(np.uint8)
    return picture


def _text(area: np.ndarray, mask: np.ndarray, top: int, left: int, colour=(240, 240, 240)):
    h, w = mask.shape
    for band in range(3):
        area[band, top:top + h, left:left + w][mask] = colour[band]
