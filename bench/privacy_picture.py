"""Make docs/privacy.png: the sample rides without privacy and with --privacy auto, side
by side.

    python bench/privacy_picture.py [--data gpx] [--zoom 14]

Builds without a basemap (nothing is fetched); each PNG cropped to the town, labelled
top-left with geoheat's bitmap font. The made-up town of gpx/ (geoheat.samples) shows
no one's home.
"""

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

import geoheat
from geoheat.writers import write_png

from pictures import label  # bench/pictures.py

ROOT = Path(__file__).resolve().parents[1]
SIZE = 400  # pixels a side of each panel, around what privacy hides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "gpx")
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "privacy.png")
    args = parser.parse_args()
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    folder = Path(tempfile.mkdtemp(prefix="geoheat-privacy-"))
    runs = {"no privacy": {}, "--privacy auto": {"privacy": "auto"}}
    pictures = []
    for i, (name, settings) in enumerate(runs.items()):
        geoheat.build([args.data], folder / f"{i}.png", zoom=args.zoom, sigma=1, legend=False,
                      parse_cache=folder / "cache", **settings)
        with rasterio.open(folder / f"{i}.png") as png:
            picture = png.read()
        if i == 1:  # around what privacy hides, the same for both panels
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
    write_png(args.out, np.concatenate([pictures[0], gap, pictures[1]], axis=2))
    print(f"{args.out}: {args.data} at zoom {args.zoom}: " + " | ".join(runs))


if __name__ == "__main__":
    main()
