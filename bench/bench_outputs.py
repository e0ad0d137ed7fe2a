"""Time and size of each output kind, as the build writes it, for real runs at one zoom.

    python bench/bench_outputs.py [--data ../shared/data/chengdu-runs] [--zoom 15]
                                  [--repeat 3]

Every case is a whole `geoheat build` in a fresh process, so the writers run exactly as a
user's build runs them (their pyramid levels, overviews and side files included) and the
bench cannot drift from the build. The tracks are parsed and counted once first (the
parse and counts caches), so each case reads its counts from the cache and what differs
between cases is the writing: each case's time is quoted against the GeoTIFF-only build
of the same run (median of --repeat, alternated), and its files are measured.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from measure import run  # bench/measure.py: one measured process

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"

# Name -> (the -o output, extra options). The first is the baseline.
CASES = {
    "GeoTIFF heat (COG) + .qml": ("h.tif", []),
    "+ PNG, no basemap": ("h.png", ["--basemap", "none"]),
    "+ CSV": ("h.tif", ["--csv"]),
    "+ RGBA GeoTIFF (COG)": ("h.tif", ["--rgba-tif"]),
    "+ counts GeoTIFF (COG)": ("h.tif", ["--counts"]),
    "+ MBTiles": ("h.tif", ["--mbtiles", "{folder}/h.mbtiles"]),
    "+ PMTiles": ("h.tif", ["--pmtiles", "{folder}/h.pmtiles"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zoom", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found (the benchmark reads ../shared/data/chengdu-runs)")
    work = Path(tempfile.mkdtemp(prefix="geoheat-bench-outputs-"))
    cache = work / "cache"

    def argv(name: str) -> tuple[Path, list[str]]:
        folder = work / name.strip("+ ").split(" ")[0].replace(",", "")
        folder.mkdir(exist_ok=True)
        output, extra = CASES[name]
        return folder, [sys.executable, "-m", "geoheat", "build", str(args.data), "-q",
                        "--zoom", str(args.zoom), "--cache", str(cache),
                        "-o", str(folder / output),
                        *(e.format(folder=folder) for e in extra)]

    # Parse and count once, with every tile output, so each case's counts are cached.
    run(argv("+ MBTiles")[1] + ["--pmtiles", str(work / "fill.pmtiles")])
    seconds: dict[str, list[float]] = {name: [] for name in CASES}
    sizes = {}
    for _ in range(args.repeat):
        for name in CASES:
            folder, command = argv(name)
            seconds[name].append(run(command).seconds)
            sizes[name] = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    base_name = next(iter(CASES))
    base = statistics.median(seconds[base_name])
    print(f"{args.data} at zoom {args.zoom}; median of {args.repeat}, alternated; counts "
          f"from the counts cache; outputs in {work}")
    print("| build | seconds | x GeoTIFF only | MB written |")
    print("| --- | ---: | ---: | ---: |")
    for name in CASES:
        median = statistics.median(seconds[name])
        print(f"| {name} | {median:.2f} | {median / base:.2f} | {sizes[name]:.2f} |")


if __name__ == "__main__":
    main()
