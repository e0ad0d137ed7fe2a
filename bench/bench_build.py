"""Benchmark geoheat build on real runs against baselines measured in the same run.

    python bench/bench_build.py [--data ../shared/data/chengdu-runs] [--skip-gpxpy]
                                [--zoom 15] [--street-zoom 17]
                                [--cold-only] [--pairs N] [--baseline DIR]

Every case runs in a fresh Python process (start-up and imports included, as a
user sees them), one after another, after the files were read once so that all
cases find them in the page cache. Printed: wall time, points per second, peak
memory (the process's max RSS, from wait4) and the ratios the issues set targets
for, each against a baseline from this same run:

- gpxpy.parse of the same files: the parser the original script compared itself with;
- fiona reading the tracks and nothing else: the floor of a fiona-based build.

The cold read's ratio (issue 26: <= 1.15) is taken pair by pair: with --pairs N the fiona
read and the cold 1-job build run in turn N times, and the median of the N ratios is
printed (with their range), so a machine whose speed drifts moves both alike.
--baseline DIR runs that cold build with another checkout's geoheat too, in each pair
(its ratio to fiona, and after / before). --cold-only runs only those cases (a city-sized
--data then takes minutes, not the zoom-17 cases' much longer).

Needs the bench extra: pip install -e '.[bench]'.
"""

import argparse
import shutil
import statistics
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
    parser.add_argument("--cold-only", action="store_true",
                        help="only the fiona read and the cold 1-job builds")
    parser.add_argument("--pairs", type=int, default=1,
                        help="fiona read / cold build pairs for the cold read's ratio")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout: its cold build in each pair too")
    args = parser.parse_args()
    z, low, street = args.zoom, args.zoom - 1, args.street_zoom
    args.data = args.data.resolve()  # the cases run in the checkout's folder (--baseline's)
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
    cold = f"build z{z}, 1 job, no cache"
    if args.cold_only:
        cases = {name: argv for name, argv in cases.items()
                 if name in ("gpxpy.parse (baseline)", "fiona read only", cold,
                             f"build z{z - 3}, 1 job, no cache")}
    size = sum(Path(p).stat().st_size for p in files) / 1e6
    print(f"{len(files)} files, {size:.0f} MB, from {args.data}; outputs in {work}")
    print(f"{'case':<34} {'wall s':>7} {'points/s':>10} {'peak MB':>8}")
    measured, points = {}, None
    for name, argv in cases.items():
        if name.startswith("rebuild"):
            shutil.rmtree(cache / "counts", ignore_errors=True)
        seconds, _, peak, out = run(argv, cwd=ROOT)
        if points is None:
            points = int(out.strip())
        measured[name] = (seconds, peak)
        print(f"{name:<34} {seconds:7.2f} {points / seconds:10,.0f} {peak:8.0f}")
    print(f"{points:,} trackpoints")
    pairs = cold_pairs(cases["fiona read only"], cases[cold], args.baseline, args.pairs - 1,
                       (measured["fiona read only"][0], measured[cold][0]))

    def ratio(a: str, b: str) -> float:
        return measured[a][0] / measured[b][0]

    print("\nratios (target):")
    if "gpxpy.parse (baseline)" in measured:
        print(f"  build z{z - 3} / gpxpy.parse            "
              f"{ratio(f'build z{z - 3}, 1 job, no cache', 'gpxpy.parse (baseline)'):5.2f}")
        print(f"  build z{z} / gpxpy.parse            "
              f"{ratio(f'build z{z}, 1 job, no cache', 'gpxpy.parse (baseline)'):5.2f}")
    print(f"  cold 1 job / fiona read     (<=1.15) {pairs}")
    if args.cold_only:
        return
    print(f"  2 jobs / 1 job             (<=0.65) {ratio(f'build z{z}, 2 jobs, no cache', cold):5.2f}")
    print(f"  warm rebuild / cold         (<=0.1) "
          f"{ratio(f'rebuild z{low} sigma 2, parse cache', f'build z{z}, 1 job, filling cache'):5.2f}")
    lines, points_case = (f"z{street} extent all, lines, warm", f"z{street} extent all, points, warm")
    print(f"  z{street} lines / z{street} points      (<=2.0) {ratio(lines, points_case):5.2f}")
    print(f"  z{street} extent all peak MB      (<500)  {measured[lines][1]:5.0f}")


def cold_pairs(fiona: list[str], cold: list[str], baseline: Path | None, more: int,
               first: tuple[float, float]) -> str:
    """The cold build / fiona read ratio, pair by pair: the first pair (measured above)
    and `more` pairs run now, in turn; with a baseline checkout, its cold build in each
    pair too. Their medians, and the range when there are several."""
    ratios, before, after_before = [first[1] / first[0]], [], []
    for i in range(more + 1):
        if i:  # the first pair's fiona and build ran with the cases
            seconds = run(fiona, cwd=ROOT).seconds
            ratios.append(run(cold, cwd=ROOT).seconds / seconds)
        else:
            seconds = first[0]
        if baseline is not None:
            old = run(cold, cwd=baseline).seconds
            before.append(old / seconds)
            after_before.append(ratios[-1] / before[-1])

    def median(values: list[float]) -> str:
        text = f"{statistics.median(values):5.2f}"
        return text + (f" ({min(values):.2f}-{max(values):.2f}, {len(values)} pairs)"
                       if len(values) > 1 else "")

    line = median(ratios)
    if baseline is not None:
        line += (f"; baseline {baseline}: {median(before).strip()}; "
                 f"after / before {median(after_before).strip()}")
    return line


if __name__ == "__main__":
    main()
