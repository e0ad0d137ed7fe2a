"""How the heat reads at every zoom of the MBTiles: alpha of lit pixels, level by level.

    python bench/bench_pyramid.py [--data ../shared/data/chengdu-runs] [--zoom 16] [--min-zoom 10]

Builds the runs at --zoom with MBTiles down to --min-zoom (no basemap, no PNG needed),
then reads every stored tile back (sqlite3 + rasterio's PNG driver: public tools only)
and prints, per level: tiles stored, the median alpha of lit pixels (alpha > 0), its
ratio to the top level's (the issue's target: >= 0.8), and the share of the stored
tiles' pixels that are opaque black (alpha 255, r = g = b = 0), which a web map shows
as black rectangles over the basemap.
"""

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

import geoheat

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"


def level_stats(path: Path) -> dict[int, tuple[int, float, float]]:
    """zoom -> (tiles, median alpha of lit pixels, share of opaque black pixels)."""
    levels: dict[int, list[np.ndarray]] = {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        for zoom, data in db.execute("SELECT zoom_level, tile_data FROM tiles"):
            with MemoryFile(bytes(data)) as mem, mem.open() as png:
                pixels = png.read()
            if pixels.shape[0] == 4:
                levels.setdefault(zoom, []).append(pixels)
            else:  # no alpha band: every pixel opaque
                alpha = np.full((1, *pixels.shape[1:]), 255, np.uint8)
                levels.setdefault(zoom, []).append(np.concatenate([pixels[:3], alpha]))
    stats = {}
    for zoom, blocks in sorted(levels.items()):
        rgba = np.stack(blocks)
        alpha = rgba[:, 3]
        lit = alpha[alpha > 0]
        black = (alpha == 255) & (rgba[:, :3].max(axis=1) == 0)
        stats[zoom] = (len(blocks), float(np.median(lit)) if lit.size else 0.0,
                       float(black.mean()))
    return stats


def main() -> None:
    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # PNG tiles carry no georeference
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zoom", type=int, default=16)
    parser.add_argument("--min-zoom", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=1.0)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found (the benchmark reads ../shared/data/chengdu-runs)")
    folder = Path(tempfile.mkdtemp(prefix="geoheat-bench-pyramid-"))
    started = time.perf_counter()
    result = geoheat.build([args.data], folder / "h.png", zoom=args.zoom, sigma=args.sigma,
                           mbtiles=folder / "h.mbtiles", min_zoom=args.min_zoom)
    seconds = time.perf_counter() - started
    print(f"{args.data.name}: {result.activities} activities, {result.points_used:,} points, "
          f"zoom {args.zoom}, {result.grid.width}x{result.grid.height} px, sigma {args.sigma:g}; "
          f"build {seconds:.1f} s")
    stats = level_stats(folder / "h.mbtiles")
    top = stats[max(stats)][1]
    print(f"{'zoom':>4} {'tiles':>6} {'median alpha':>13} {'x top':>6} {'opaque black':>13}")
    for zoom in sorted(stats, reverse=True):
        tiles_n, median, black = stats[zoom]
        print(f"{zoom:>4} {tiles_n:>6} {median:>13.0f} {median / top:>6.2f} {black:>12.0%}")
    print(f"outputs in {folder}")


if __name__ == "__main__":
    main()
