"""The key to a heatmap coloured by rank: which passes its colours stand for.

The PNG gets a colour bar bottom-left with the pass counts at a few of its colours
(`add_legend`); the QGIS style's ramp items are labelled in passes (`ramp_labels`).
Under --normalize local the heat is a rank among neighbours, so both say fewer/more.
"""

from typing import TYPE_CHECKING

import numpy as np

from . import font
from .colormaps import STYLES, lut
from .heat import legend_ticks, passes_at

if TYPE_CHECKING:
    from .options import BuildOptions


def unit(mode: str, n: int) -> str:
    """'1 pass', '12 passes' (lines mode); '1 track point', '3 track points' (points)."""
    noun = "pass" if mode == "lines" else "track point"
    return f"{n} {noun}" + ("" if n == 1 else ("es" if noun == "pass" else "s"))


def add_legend(picture: np.ndarray, counts, options: "BuildOptions") -> None:
    """The PNG's key, bottom-left: the colour bar and the passes its colours stand for."""
    scale = 1 if picture.shape[2] < 1200 else 2
    what = "passes" if options.mode == "lines" else "track points"
    if options.normalize == "local":
        ticks, title = [(0.0, "fewer"), (1.0, "more")], f"{what}, ranked nearby"
    else:
        ticks = [(h, f"{n:,}") for h, n in legend_ticks(counts, options.scaling)]
        title = what
    draw(picture, lut(options.colormap), ticks, title, scale, STYLES[options.style].background)


def ramp_labels(counts, options: "BuildOptions", stops: int = 16) -> list[str]:
    """The QGIS style's ramp items labelled in passes (local contrast: by local rank)."""
    positions = np.linspace(0, 1, stops + 1)
    if options.normalize == "local":
        return ["none"] + [f"rank {p:.0%} nearby" for p in positions[1:]]
    counts_at = passes_at(counts, options.scaling, positions)
    # Most of the ramp may stand for one count (a CDF climbs in steps): name each count
    # once, at the first item that reaches it, so QGIS's legend reads as a scale.
    return ["none"] + [unit(options.mode, n) if n != before else ""
                       for before, n in zip([0, *counts_at[1:-1]], counts_at[1:])]


def draw(picture: np.ndarray, table: np.ndarray, ticks, title: str, scale: int = 1,
         background=(0, 0, 0)) -> np.ndarray:
    """Draw a key bottom-left on a (3, h, w) picture, in place: a colour bar of the
    (256, 3) lookup table (heat 0 to 1, left to right) over the title, with the labels of `ticks`
    ((heat, text) pairs) under their place on the bar, on a dimmed box.

    Labels that would overlap the one before are left out (the last one is kept).
    """
    pad, gap = 4 * scale, 2 * scale
    bar_w, bar_h = 128 * scale, 8 * scale
    glyph_h = font.GLYPH_HEIGHT * scale
    labels = []
    for heat, text in ticks:
        width = font.text_size(text, scale)[0]
        left = int(round(min(max(heat * bar_w - width / 2, 0), bar_w - width)))
        labels.append((left, width, text))
    kept = []
    for i, (left, width, text) in enumerate(labels):
        last = i == len(labels) - 1
        while kept and kept[-1][0] + kept[-1][1] + 2 * scale > left and last:
            kept.pop()  # the last label (the most passes) wins a clash
        if not kept or kept[-1][0] + kept[-1][1] + 2 * scale <= left:
            kept.append((left, width, text))
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
    _text(area, font.text_mask(title, scale), y, pad)
    y += glyph_h + gap
    index = np.rint(np.linspace(0, 255, bar_w)).astype(int)
    area[:, y:y + bar_h, pad:pad + bar_w] = table[index].T[:, None, :]
    y += bar_h + gap
    for left, _, text in kept:
        _text(area, font.text_mask(text, scale), y, pad + left)
    picture[:, top:, :box_w] = np.rint(area).astype(np.uint8)
    return picture


def _text(area: np.ndarray, mask: np.ndarray, top: int, left: int, colour=(240, 240, 240)):
    h, w = mask.shape
    for band in range(3):
        area[band, top:top + h, left:left + w][mask] = colour[band]
