"""Benchmark geoheat build on real runs against baselines measured in the same run.

    python bench/bench_build.py [--data ../shared/data/chengdu-runs] [--skip-gpxpy]
                                [--zoom 15] [--street-zoom 17]

Every case runs in a fresh Python process (start-up and imports included, as a
user sees them), one after another, after the files were read once so that all
cases find them in the page cache. Printed: wall time, points per second, peak
memory (the process's max RSS, from wait4) and the ratios the issues set targets
for, each against a baseline from this same run:

- gpxpy.parse of the same files: the parser the original script compared itself with;
- fiona reading the tracks and nothing else: the floor of a fiona-based build.

Needs the bench extra: pip install -e '.[bench]'.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from measure import run  # bench/measure.py: one measured process

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"

GPXPY = """
import sys, gpxpy
n = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        n += gpxpy.parse(f).get_points_no()
print(n)
"""

FIONA = """
import sys, fiona

n = 0
for path in sys.argv[1:]:
    with fiona.open(path, layer="tracks") as layer:
        for feature in layer:
            n += sum(len(line) for line in feature.geometry.coordinates)
print(n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--skip-gpxpy", action="store_true", help="skip the slow baseline")
    parser.add_argument("--zoom", type=int, default=15, help="the cold builds' zoom")
    parser.add_argument("--street-zoom", type=int, default=17,
                        help="the zoom of the lines/points cases")
    args = parser.parse_args()
    z, low, street = args.zoom, args.zoom - 1, args.street_zoom
    files = sorted(str(p) for p in args.data.glob("*.gpx"))
    if not files:
        sys.exit(f"no GPX files in {args.data} (the benchmark reads ../shared/data/chengdu-runs)")
    for path in files:  # warm the page cache so no case pays for the disk
        Path(path).read_bytes()

    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="geoheat-bench-"))
    cache = work / "cache"

    def geoheat(name: str, *options: str) -> list[str]:
        return [py, "-m", "geoheat", "build", str(args.data), "--quiet", "--basemap", "none",
                "-o", str(work / f"{name}.png"), *options]

    cases = {}
    if not args.skip_gpxpy:
        cases["gpxpy.parse (baseline)"] = [py, "-c", GPXPY, *files]
    cases.update({
        "fiona read only": [py, "-c", FIONA, *files],
        f"build z{z - 3}, 1 job, no cache": geoheat("low", "--zoom", str(z - 3), "-j", "1",
                                                  "--no-cache"),
        f"build z{z}, 1 job, no cache": geoheat("cold", "--zoom", str(z), "-j", "1",
                                              "--no-cache"),
        f"build z{z}, 2 jobs, no cache": geoheat("coldj2", "--zoom", str(z), "-j", "2",
                                               "--no-cache"),
        f"build z{z}, 1 job, filling cache": geoheat("fill", "--zoom", str(z), "-j", "1",
                                                   "--cache", str(cache)),
        # The counts cache is emptied first: this rebuild parses nothing and counts again.
        f"rebuild z{low} sigma 2, parse cache": geoheat("warm", "--zoom", str(low), "--sigma",
                                                      "2", "--cache", str(cache)),
        f"z{street} extent all, lines, warm": geoheat("streetl", "--zoom", str(street),
                                                    "--extent", "all", "--mode", "lines",
                                                    "--cache", str(cache)),
        f"z{street} extent all, points, warm": geoheat("streetp", "--zoom", str(street),
                                                     "--extent", "all", "--mode", "points",
                                                     "--cache", str(cache)),
    })
    size = sum(Path(p).stat().st_size for p in files) / 1e6
    print(f"{len(files)} files, {size:.0f} MB, from {args.data}; outputs in {work}")
    print(f"{'case':<34} {'wall s':>7} {'points/s':>10} {'peak MB':>8}")
    measured, points = {}, None
    for name, argv in cases.items():
        if name.startswith("rebuild"):
            shutil.rmtree(cache / "counts", ignore_errors=True)
        seconds, _, peak, out = run(argv)
        if points is None:
            points = int(out.strip())
        measured[name] = (seconds, peak)
        print(f"{name:<34} {seconds:7.2f} {points / seconds:10,.0f} {peak:8.0f}")
    print(f"{points:,} trackpoints")

    def ratio(a: str, b: str) -> float:
        return measured[a][0] / measured[b][0]

    print("\nratios (target):")
    if "gpxpy.parse (baseline)" in measured:
        print(f"  build z{z - 3} / gpxpy.parse            "
              f"{ratio(f'build z{z - 3}, 1 job, no cache', 'gpxpy.parse (baseline)'):5.2f}")
        print(f"  build z{z} / gpxpy.parse            "
              f"{ratio(f'build z{z}, 1 job, no cache', 'gpxpy.parse (baseline)'):5.2f}")
    cold = f"build z{z}, 1 job, no cache"
    print(f"  cold 1 job / fiona read     (<=1.15) {ratio(cold, 'fiona read only'):5.2f}")
    print(f"  2 jobs / 1 job             (<=0.65) {ratio(f'build z{z}, 2 jobs, no cache', cold):5.2f}")
    print(f"  warm rebuild / cold         (<=0.1) "
          f"{ratio(f'rebuild z{low} sigma 2, parse cache', f'build z{z}, 1 job, filling cache'):5.2f}")
    lines, points_case = (f"z{street} extent all, lines, warm", f"z{street} extent all, points, warm")
    print(f"  z{street} lines / z{street} points      (<=2.0) {ratio(lines, points_case):5.2f}")
    print(f"  z{street} extent all peak MB      (<500)  {measured[lines][1]:5.0f}")

if __name__ == "__main__":
    main()
