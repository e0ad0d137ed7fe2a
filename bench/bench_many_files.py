"""Many tiny files: a build with no cache, filling the parse cache, and from it.

    python bench/bench_many_files.py [--files 2000] [--rounds 3] [--compare TREE]

Writes --files tiny GPX tracks (8 points each, ~3.5 KB, starts 7 hours apart so no
two are duplicates) to a temporary folder outside the repository, then times, each a
fresh `geoheat build DIR -o X.tif -j 1 --basemap none -q` process (start-up and
imports included, as a user sees them):

- no cache (`--no-cache`);
- cold: filling an empty parse cache;
- warm: from it again, at another sigma (the parse cache, then the counts again).

--compare TREE also runs each case with another geoheat source tree (PYTHONPATH=TREE,
e.g. `git archive` of an older commit), next to this one's (first in every other
round), so the machine's drifting load hits both alike. Printed per tree and case: the median wall seconds and
the median CPU seconds (user + system of the build process: what contention for the
2 shared cores inflates least), and cold / no cache for each. Issue 28 measured
100,000 such files at 585 s cold, 201 s warm, 381 s with no cache.
"""

import argparse
import os
import resource
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

CASES = ("no cache", "cold", "warm")


def write_files(folder: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        start = np.array([14.5, 46.05]) + rng.uniform(-0.05, 0.05, 2)
        track = start + np.cumsum(rng.normal(0, 0.0003, (8, 2)), axis=0)
        when = t0 + timedelta(hours=7 * i)
        times = [[when + timedelta(seconds=10 * j) for j in range(8)]]
        (folder / f"{i:06d}.gpx").write_text(gpx_document([track], times=times))


def build(tree: Path, folder: Path, out: Path, *options: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one build in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-m", "geoheat", "build", str(folder), "-o", str(out / "h.tif"),
               "-j", "1", "--basemap", "none", "-q", *options]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None,
                        help="another geoheat source tree, timed case by case beside this one")
    parser.add_argument("--keep", type=Path, default=None,
                        help="a folder for the generated files, kept between runs")
    args = parser.parse_args()
    trees = {"this": ROOT, **({"compared": args.compare.resolve()} if args.compare else {})}
    work = Path(tempfile.mkdtemp(prefix="geoheat-bench-many-"))
    try:
        folder = args.keep or work / "tracks"
        if not (folder.is_dir() and len(list(folder.glob("*.gpx"))) == args.files):
            folder.mkdir(parents=True, exist_ok=True)
            write_files(folder, args.files)
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_ in range(args.rounds):
            caches = {name: work / f"cache-{name}-{round_}" for name in trees}
            # Each round in the other order: a build's writes still being flushed slow
            # the next one down.
            order = list(trees.items())[::1 if round_ % 2 == 0 else -1]
            for case in CASES:
                for name, tree in order:
                    options = {"no cache": ("--no-cache",),
                               "cold": ("--cache", str(caches[name])),
                               "warm": ("--cache", str(caches[name]), "--sigma", "2")}[case]
                    runs.setdefault((name, case), []).append(build(tree, folder, work, *options))
            for cache in caches.values():
                shutil.rmtree(cache)
        print(f"{args.files:,} tiny files, median of {args.rounds} rounds:\n")
        print("| tree | case | wall s | ms a file | CPU s |\n| --- | --- | ---: | ---: | ---: |")
        medians = {}
        for (name, case), values in runs.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            medians[name, case] = wall, cpu
            print(f"| {name} | {case} | {wall:.1f} | {wall / args.files * 1000:.2f} | {cpu:.1f} |")
        print()
        for name in trees:
            (nw, nc), (cw, cc) = medians[name, "no cache"], medians[name, "cold"]
            print(f"{name}: cold / no cache {cw / nw:.2f} wall, {cc / nc:.2f} CPU; "
                  f"warm / no cache {medians[name, 'warm'][0] / nw:.2f} wall")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
