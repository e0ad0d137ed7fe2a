"""Benchmark geoheat build on real runs against a baseline measured in the same run.

    python bench/bench_build.py [--data ../shared/data/chengdu-runs] [--zooms 12 15]

Every case runs in a fresh Python process, one after the other, after the files
were read once so that all cases find them in the page cache. Wall time, points
per second and peak memory (the process's max RSS, from wait4) are printed, and
each time as a ratio to the baseline: gpxpy.parse of the same files, the parser the
original strava_local_heatmap.py compared itself with. Also printed: fiona reading
the same tracks and nothing else, the floor any fiona-based build stands on.
Needs the bench extra: pip install -e '.[bench]'.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run_measured(argv: list[str]) -> tuple[float, float, str]:
    """Run a command; its wall seconds, its own peak RSS in MB and its stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            sys.exit(f"{' '.join(argv[:5])} ... failed ({proc.returncode}): {err.read().strip()}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zooms", type=int, nargs="+", default=[12, 15])
    args = parser.parse_args()
    files = sorted(str(p) for p in args.data.glob("*.gpx"))
    if not files:
        sys.exit(f"no GPX files in {args.data} (the benchmark reads ../shared/data/chengdu-runs)")
    for path in files:  # warm the page cache so no case pays for the disk
        Path(path).read_bytes()

    py = sys.executable
    out_dir = Path(tempfile.mkdtemp(prefix="geoheat-bench-"))
    cases = [("gpxpy.parse (baseline)", [py, "-c", GPXPY, *files]),
             ("fiona read only", [py, "-c", FIONA, *files])]
    for zoom in args.zooms:
        cases.append((f"geoheat build --zoom {zoom}",
                      [py, "-m", "geoheat", "build", str(args.data), "--zoom", str(zoom),
                       "--quiet", "-o", str(out_dir / f"z{zoom}.png")]))
    size = sum(Path(p).stat().st_size for p in files) / 1e6
    print(f"{len(files)} files, {size:.0f} MB, from {args.data}")
    print(f"{'case':<28} {'wall s':>7} {'points/s':>10} {'peak MB':>8} {'x baseline':>11}")
    baseline = points = None
    for name, argv in cases:
        seconds, peak, out = run_measured(argv)
        if points is None:
            points = int(out.strip())
        baseline = baseline or seconds
        print(f"{name:<28} {seconds:7.2f} {points / seconds:10,.0f} {peak:8.0f} "
              f"{seconds / baseline:11.2f}")
    print(f"{points:,} trackpoints; outputs in {out_dir}")


if __name__ == "__main__":
    main()
