"""Make the README's pictures of the colours: docs/styles.png and docs/zooms.png.

    python bench/colour_pictures.py [--data ../shared/data/chengdu-runs] [--zoom 15]
                                    [--zooms 12 14 16]

styles.png: the same streets at zoom 15 (--zoom) in each style, on the ground each is made for
(hot and strava on their dark grounds, light on OSM's land colour #F2EFE9).
zooms.png: the same city at zooms 12, 14 and 16 (--zooms), dark (hot) above, light below, each
cut around the busiest pixel, with the legend the build draws at that zoom.

Builds without a basemap (nothing is fetched, as the tests run offline): the heat is
drawn on each style's plain ground, which is what the maps' tone under it comes to.
Each panel is a crop of a build's PNG, labelled with geoheat's bitmap font; the
PNGs are written with zlib level 9 and stay small (heat on a flat ground).
"""

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

import geoheat
from geoheat import legend
from geoheat.colormaps import STYLES, lut
from geoheat.writers import write_png

from pictures import label  # bench/pictures.py

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"
PANEL = (300, 300)  # rows, cols of each picture


def ink(style: str) -> tuple[int, int, int]:
    """A label's colour: dark on the light style's ground, light on the dark ones'."""
    return (30, 30, 30) if style == "light" else (240, 240, 240)


def build(data: Path, folder: Path, zoom: int, style: str) -> np.ndarray:
    """A panel: a build's PNG (no key) cut around its busiest pixel, with the key the
    build draws (legend.key_ticks of its counts) bottom-left."""
    out = folder / f"{style}-{zoom}.png"
    options = geoheat.BuildOptions(inputs=[data], output=out, zoom=zoom, style=style,
                                   counts=True, legend=False)
    geoheat.build(options)
    with rasterio.open(out) as png:
        picture = png.read()
    with rasterio.open(folder / f"{style}-{zoom}-counts.tif") as src:
        counts = src.read(1)
    panel = crop(picture, np.unravel_index(int(counts.argmax()), counts.shape)).copy()
    ticks, title = legend.key_ticks({(0, 0): counts}, options)
    look = STYLES[style]
    legend.draw(panel, lut(options.colormap), ticks, title, 1, look.background, bar=192,
                text=look.text)
    return panel


def crop(picture: np.ndarray, centre, size=PANEL) -> np.ndarray:
    """size pixels of picture around centre (moved inside the picture)."""
    rows, cols = size
    r0 = int(np.clip(centre[0] - rows // 2, 0, max(picture.shape[1] - rows, 0)))
    c0 = int(np.clip(centre[1] - cols // 2, 0, max(picture.shape[2] - cols, 0)))
    part = picture[:, r0:r0 + rows, c0:c0 + cols]
    if part.shape[1:] != (rows, cols):  # a small picture: padded with its corner colour
        padded = np.empty((3, rows, cols), np.uint8)
        padded[:] = picture[:, -1:, -1:]
        padded[:, :part.shape[1], :part.shape[2]] = part
        part = padded
    return part


def row(panels, gap_colour=255) -> np.ndarray:
    gap = np.full((3, panels[0].shape[1], 6), gap_colour, np.uint8)
    parts = []
    for panel in panels:
        parts += [panel, gap]
    return np.concatenate(parts[:-1], axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--zoom", type=int, default=15, help="the zoom of styles.png")
    parser.add_argument("--zooms", type=int, nargs="+", default=[12, 14, 16],
                        help="the zooms of zooms.png")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found (the pictures are made of ../shared/data/chengdu-runs)")
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    folder = Path(tempfile.mkdtemp(prefix="geoheat-pictures-"))
    styles = []
    for style in ("hot", "strava", "light"):
        panel = build(args.data, folder, args.zoom, style)
        label(panel, style, ink(style), at=6)
        styles.append(panel)
    args.out.mkdir(parents=True, exist_ok=True)
    write_png(args.out / "styles.png", row(styles))
    rows = []
    for style in ("hot", "light"):
        panels = []
        for zoom in args.zooms:
            panel = build(args.data, folder, zoom, style)
            label(panel, f"zoom {zoom}", ink(style), at=6)
            panels.append(panel)
        rows.append(row(panels))
    gap = np.full((3, 6, rows[0].shape[2]), 255, np.uint8)
    write_png(args.out / "zooms.png", np.concatenate([rows[0], gap, rows[1]], axis=1))
    for name in ("styles.png", "zooms.png"):
        size = (args.out / name).stat().st_size
        print(f"{args.out / name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
