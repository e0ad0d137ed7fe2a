"""Make docs/privacy.png: the sample rides without privacy, with --privacy auto, and with
the explorer tiles over them, side by side.

    python bench/privacy_picture.py [--data gpx] [--zoom 14] [--explorer-zoom 16]

Builds without a basemap (nothing is fetched); each PNG cropped to the town, labelled
top-left with geoheat's bitmap font. The made-up town of gpx/ (geoheat.samples) shows
no one's home.
"""

import argparse
import tempfile
import warnings
from pathlib import Path

import fiona
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

import geoheat
from geoheat import font
from geoheat.writers import write_png

ROOT = Path(__file__).resolve().parents[1]
SIZE = 400  # pixels a side of each panel, around what privacy hides


def label(picture: np.ndarray, text: str, scale: int = 2) -> None:
    mask = font.text_mask(text, scale)
    h, w = mask.shape
    picture[:, 8:8 + h, 8:8 + w][:, mask] = 240


def tile_boxes(path: Path, layer: str, grid, zoom: int):
    """(row0, row1, col0, col1) in the picture of each tile of a GeoPackage layer."""
    with fiona.open(path, layer=layer) as features:
        for feature in features:
            x, y, z = (feature.properties[k] for k in ("x", "y", "zoom"))
            side = feature.properties.get("side") or 1
            scale = 256 * 2**zoom // 2**z  # pixels a tile side (an explorer zoom <= picture zoom + 8)
            yield (y * scale - grid.row_off, (y + side) * scale - grid.row_off,
                   x * scale - grid.col_off, (x + side) * scale - grid.col_off)


def draw(picture, boxes, rgb, fill: float, width: int) -> None:
    """Tiles' outlines (and a translucent fill) onto a (3, h, w) picture."""
    _, h, w = picture.shape
    colour = np.array(rgb, dtype=float)[:, None, None]
    for r0, r1, c0, c1 in boxes:
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        if fill:
            part = picture[:, r0:r1, c0:c1].astype(float)
            picture[:, r0:r1, c0:c1] = (part * (1 - fill) + colour * fill).astype(np.uint8)
        for rows, cols in ((slice(r0, r0 + width), slice(c0, c1)),
                           (slice(r1 - width, r1), slice(c0, c1)),
                           (slice(r0, r1), slice(c0, c0 + width)),
                           (slice(r0, r1), slice(c1 - width, c1))):
            picture[:, rows, cols] = np.array(rgb, dtype=np.uint8)[:, None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "gpx")
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--explorer-zoom", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "privacy.png")
    args = parser.parse_args()
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    folder = Path(tempfile.mkdtemp(prefix="geoheat-privacy-"))
    runs = {"no privacy": {}, "--privacy auto": {"privacy": "auto"},
            "--explorer (zoom 16 tiles)": {"privacy": "auto", "explorer": folder / "x.gpkg",
                                           "explorer_zoom": args.explorer_zoom}}
    pictures, window = [], None
    for i, (name, settings) in enumerate(runs.items()):
        result = geoheat.build([args.data], folder / f"{i}.png", zoom=args.zoom, sigma=1,
                               legend=False, parse_cache=folder / "cache", **settings)
        with rasterio.open(folder / f"{i}.png") as png:
            picture = png.read()
        if "explorer" in settings:
            grid = result.grid
            draw(picture, tile_boxes(settings["explorer"], "tiles", grid, args.zoom),
                 (255, 140, 0), 0.10, 1)
            draw(picture, tile_boxes(settings["explorer"], "max_cluster", grid, args.zoom),
                 (150, 60, 230), 0.18, 1)
            draw(picture, tile_boxes(settings["explorer"], "max_square", grid, args.zoom),
                 (40, 120, 255), 0.0, 3)
        if i == 1:  # around what privacy hides, the same for every panel
            hidden = np.argwhere(np.abs(picture.astype(int) - pictures[0]).sum(axis=0) > 60)
            row, col = np.median(hidden, axis=0).astype(int)
            top = int(np.clip(row - SIZE // 2, 0, picture.shape[1] - SIZE))
            left = int(np.clip(col - SIZE // 2, 0, picture.shape[2] - SIZE))
            window = (slice(top, top + SIZE), slice(left, left + SIZE))
        pictures.append(picture)
    for i, name in enumerate(runs):
        pictures[i] = np.ascontiguousarray(pictures[i][:, window[0], window[1]])
        label(pictures[i], name)
    gap = np.full((3, SIZE, 8), 255, np.uint8)
    joined = [pictures[0]]
    for picture in pictures[1:]:
        joined += [gap, picture]
    write_png(args.out, np.concatenate(joined, axis=2))
    print(f"{args.out}: {args.data} at zoom {args.zoom}: " + " | ".join(runs))


if __name__ == "__main__":
    main()
