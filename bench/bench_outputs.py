"""Time and size of each output kind for a build of real runs at one zoom.

    python bench/bench_outputs.py [--data ../shared/data/chengdu-runs] [--zoom 15]

The tracks are read and the heat computed once; then each writer runs on its own,
timed with perf_counter, and the files it leaves are measured (side files included).
The PNG is the reference the others are quoted against, in the same run.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from geoheat import colour, find_sources, heat, report, tiles, writers
from geoheat.activities import select_activities
from geoheat.colormaps import lut, with_alpha
from geoheat.extent import choose_area
from geoheat.options import BuildOptions
from geoheat.pipeline import count_activities
from geoheat.reading import read_files

HOT = lut("hot")
HOT_RGBA = with_alpha(HOT)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zoom", type=int, default=15)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found (the benchmark reads ../shared/data/chengdu-runs)")

    sources = find_sources([args.data])
    kept, result = select_activities(read_files(sources))
    box, area = choose_area([a.summary for a in kept], None, "auto")
    grid = tiles.grid_covering(area, args.zoom)
    counts, = count_activities(kept, {s.name: s for s in sources}, box, [grid],
                               BuildOptions(inputs=[args.data]), result)
    heat_tiles = heat.blur_tiles(heat.cdf_scale_tiles(counts), 1.0, grid)
    heatmap = tiles.to_dense(heat_tiles, grid)
    rgba = {key: colour.shade_rgba(block, HOT_RGBA) for key, block in heat_tiles.items()}
    print(f"{result.files_read} files, {result.points_used:,} points, zoom {args.zoom}, "
          f"{grid.width}x{grid.height} px, {len(heat_tiles)} tiles with heat, lines mode")

    folder = Path(tempfile.mkdtemp(prefix="geoheat-bench-outputs-"))
    result.zoom = args.zoom
    metadata = report.mbtiles_metadata(folder / "h.mbtiles", (0.0, 0.0), args.zoom - 4, result)
    cases = {
        "PNG (+ .pgw, .aux.xml)": ("h.png", lambda p: writers.write_png(p, colour.shade(heatmap, HOT), grid)),
        "GeoTIFF heat (COG)": ("h.tif", lambda p: writers.write_geotiff(p, heat_tiles, grid)),
        "QGIS style (.qml)": ("h.qml", lambda p: writers.write_qml(p, HOT_RGBA)),
        "CSV": ("h.csv", lambda p: writers.write_csv(p, heat_tiles, grid)),
        "RGBA GeoTIFF (COG)": ("h-rgba.tif", lambda p: writers.write_tiled_cog(
            p, rgba, grid, count=4, dtype="uint8", nodata=None)),
        "counts GeoTIFF (COG)": ("h-counts.tif", lambda p: writers.write_tiled_cog(
            p, counts, grid, count=1, dtype="uint32")),
        f"MBTiles z{args.zoom - 4}-{args.zoom}": (
            "h.mbtiles", lambda p: writers.write_mbtiles(
                p, writers.visible_tiles(rgba, args.zoom), metadata)),
    }
    print(f"{'output':<26} {'seconds':>8} {'x PNG':>6} {'MB':>7}")
    reference = None
    for name, (filename, write) in cases.items():
        before = set(folder.iterdir())
        started = time.perf_counter()
        write(folder / filename)
        seconds = time.perf_counter() - started
        reference = reference or seconds
        size = sum(p.stat().st_size for p in set(folder.iterdir()) - before)  # with side files
        print(f"{name:<26} {seconds:8.2f} {seconds / reference:6.2f} {size / 1e6:7.2f}")
    print(f"heat pixels > 0: {int(np.count_nonzero(heatmap)):,}; outputs in {folder}")



if __name__ == "__main__":
    main()
