"""Make docs/normalize.png: the same runs under --normalize global and local, side by side.

    python bench/contrast_picture.py [--data ../shared/data/chengdu-runs] [--zoom 15]

Two builds without a basemap (nothing is fetched), their PNGs joined with a white gap and
each labelled top-left with geoheat's bitmap font.
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
from geoheat.writers import write_png

from pictures import label  # bench/pictures.py

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zoom", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "normalize.png")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found (the picture is made of ../shared/data/chengdu-runs)")
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    folder = Path(tempfile.mkdtemp(prefix="geoheat-normalize-"))
    pictures = []
    for mode in ("global", "local"):
        geoheat.build([args.data], folder / f"{mode}.png", zoom=args.zoom, normalize=mode)
        with rasterio.open(folder / f"{mode}.png") as png:
            picture = png.read()
        label(picture, f"--normalize {mode}")
        pictures.append(picture)
    gap = np.full((3, pictures[0].shape[1], 8), 255, np.uint8)
    write_png(args.out, np.concatenate([pictures[0], gap, pictures[1]], axis=2))
    print(f"{args.out}: {args.data.name} at zoom {args.zoom}, global | local")


if __name__ == "__main__":
    main()
