"""Many tiny files: a build with no cache, filling the parse cache, and from it.

    python bench/bench_many_files.py [--files 5000] [--rounds 1] [--keep DIR]

Writes --files tiny GPX tracks (8 points each, ~3.5 KB, a start 7 hours apart so no
two are duplicates) to a temporary folder outside the repository, then times, each a
fresh `geoheat build DIR -o X.tif -j 1 --basemap none -q` process (start-up and
imports included, as a user sees them), round after round so drift in the machine's
load hits all alike:

- no cache (`--no-cache`);
- cold: filling an empty parse cache;
- warm: the same build again from it (no counts cache: the parse cache alone);
- warm, counts cached: the same build a third time (the counts from the counts cache).

Issue 28 measured 100,000 such files at 585 s cold, 201 s warm, 381 s with no cache:
the cold build was slower than none. Printed: the median seconds and per-file ms of
each case, and cold / no cache. The shared machine is noisy: quote the ratios.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geoheat.samples import gpx_document  # noqa: E402


def write_files(folder: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        start = np.array([14.5, 46.05]) + rng.uniform(-0.05, 0.05, 2)
        track = start + np.cumsum(rng.normal(0, 0.0003, (8, 2)), axis=0)
        when = t0 + timedelta(hours=7 * i)
        times = [[when + timedelta(seconds=10 * j) for j in range(8)]]
        (folder / f"{i:06d}.gpx").write_text(gpx_document([track], times=times))


def build(folder: Path, out: Path, *options: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "geoheat", "build", str(folder), "-o", str(out / "h.tif"),
               "-j", "1", "--basemap", "none", "-q", *options]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None,
                        help="a folder for the generated files, kept between runs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geoheat-bench-many-"))
    try:
        folder = args.keep or work / "tracks"
        if not (folder.is_dir() and len(list(folder.glob("*.gpx"))) == args.files):
            folder.mkdir(parents=True, exist_ok=True)
            write_files(folder, args.files)
        times: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            cache = work / f"cache-{round_}"
            for case, options in (("no cache", ("--no-cache",)),
                                  ("cold", ("--cache", str(cache))),
                                  ("warm", ("--cache", str(cache), "--sigma", "2")),
                                  ("warm, counts cached", ("--cache", str(cache), "--sigma", "2"))):
                times.setdefault(case, []).append(build(folder, work, *options))
            shutil.rmtree(cache)
        print(f"{args.files:,} files, median of {args.rounds} round(s):")
        print("| case | s | ms a file |\n| --- | ---: | ---: |")
        medians = {case: statistics.median(values) for case, values in times.items()}
        for case, seconds in medians.items():
            print(f"| {case} | {seconds:.1f} | {seconds / args.files * 1000:.2f} |")
        print(f"cold / no cache: {medians['cold'] / medians['no cache']:.2f}; "
              f"warm / no cache: {medians['warm'] / medians['no cache']:.2f}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
