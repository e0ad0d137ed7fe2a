"""The key to a heatmap coloured by rank: which passes its colours stand for.

The PNG gets a colour bar with the pass counts at a few of its colours, in the corner
where it hides the least heat (`add_legend`); the QGIS style's ramp items are those counts (`ramp_items`), each at
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


def add_legend(picture: np.ndarray, counts, options: "Drawing", heat=None) -> None:
    """The PNG's key: the colour bar and the passes its colours stand for, in the
    corner where it hides the least heat (heat: the picture's heat as rows, a
    tiles.RowView; None: bottom-left). On a small picture the key's box is a large part
    of it, and bottom-left put it over a town's busiest loop."""
    ticks, title = key_ticks(counts, options)
    scale = legend_scale(picture.shape[2])
    corner = BOTTOM_LEFT
    if heat is not None:
        box_w, box_h = key_size(title, scale, bar=192)
        corner = quietest_corner(heat, box_w, box_h)
    draw(picture, lut(options.colormap), ticks, title, scale,
         STYLES[options.style].background, bar=192, text=STYLES[options.style].text,
         corner=corner)


# Where the key goes: (at the bottom, at the left); the first of equals wins.
BOTTOM_LEFT = (True, True)
CORNERS = (BOTTOM_LEFT, (True, False), (False, True), (False, False))


def key_size(title: str, scale: int, bar: int) -> tuple[int, int]:
    """The key's box, (width, height) in pixels."""
    pad, gap = 4 * scale, 2 * scale
    glyph_h = font.GLYPH_HEIGHT * scale
    title_w = font.text_size(title, scale)[0]
    return (max(bar * scale, title_w) + 2 * pad,
            pad + glyph_h + gap + 8 * scale + gap + glyph_h + pad)


def quietest_corner(heat, box_w: int, box_h: int) -> tuple[bool, bool]:
    """The corner whose box of box_w x box_h pixels holds the least heat (heat: rows
    of the picture's heat, heat[top:stop] dense); bottom-left among equals."""
    height, width = heat.shape
    if box_h > height or box_w > width:
        return BOTTOM_LEFT
    rows = {True: heat[height - box_h:height], False: heat[0:box_h]}
    sums = {(bottom, left): float(rows[bottom][:, :box_w].sum() if left
                                  else rows[bottom][:, width - box_w:].sum())
            for bottom, left in CORNERS}
    return min(CORNERS, key=lambda corner: sums[corner])


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
         background=(0, 0, 0), bar: int = 128, text=(240, 240, 240),
         corner=BOTTOM_LEFT) -> np.ndarray:
    """Draw a key in a corner ((at the bottom, at the left); default bottom-left) of a
    (3, h, w) picture, in place: a colour bar of the
    (256, 3) lookup table (heat 0 to 1, left to right, `bar` x scale pixels) over the
    title, with the labels of `ticks` ((heat, text) pairs, by heat) under their place on
    the bar, on a dimmed box.

    The last label (the most) is always drawn; the others from the left wherever they
    do not overlap a label already drawn nor the last: the middle ones stay.
    """
    pad, gap = 4 * scale, 2 * scale
    bar_w, bar_h = bar * scale, 8 * scale
    glyph_h = font.GLYPH_HEIGHT * scale
    kept = placed_labels(ticks, scale, bar)
    box_w, box_h = key_size(title, scale, bar)
    _, height, width = picture.shape
    if box_w > width or box_h > height:
        return picture  # too small a picture for a key
    bottom, at_left = corner
    top = height - box_h if bottom else 0
    left = 0 if at_left else width - box_w
    place = np.s_[:, top:top + box_h, left:left + box_w]
    area = picture[place].astype(np.float32)
    area[:] = area * 0.35 + np.asarray(background, np.float32)[:, None, None] * 0.65
    y = pad
    _text(area, font.text_mask(title, scale), y, pad, text)
    y += glyph_h + gap
    index = np.rint(np.linspace(0, 255, bar_w)).astype(int)
    area[:, y:y + bar_h, pad:pad + bar_w] = table[index].T[:, None, :]
    y += bar_h + gap
    for left, _, label in kept:
        _text(area, font.text_mask(label, scale), y, pad + left, text)
    picture[place] = np.rint(area).astype(np.uint8)
    return picture


# Pixels (at scale 1) between two labels: 2 read "6 72" as one number; 4 is most of a
# glyph's width, yet keeps every middle label of a real key (chengdu-runs at zoom 16).
LABEL_ROOM = 4


def placed_labels(ticks, scale: int = 1, bar: int = 128) -> list[tuple[int, int, str]]:
    """The labels of ticks ((heat, text) pairs, by heat) the key draws, as (left, width,
    text) in pixels along its bar: the last (the most) always, the others from the left
    wherever they keep LABEL_ROOM from every label kept."""
    bar_w = bar * scale
    room = LABEL_ROOM * scale
    labels = []
    for heat, label in ticks:
        width = font.text_size(label, scale)[0]
        left = int(round(min(max(heat * bar_w - width / 2, 0), bar_w - width)))
        labels.append((left, width, label))

    def apart(a, b):
        return a[0] + a[1] + room <= b[0] or b[0] + b[1] + room <= a[0]

    kept = labels[-1:]
    for label in labels[:-1]:
        if all(apart(label, other) for other in kept):
            kept.append(label)
    return kept


def _text(area: np.ndarray, mask: np.ndarray, top: int, left: int, colour=(240, 240, 240)):
    h, w = mask.shape
    for band in range(3):
        area[band, top:top + h, left:left + w][mask] = colour[band]
