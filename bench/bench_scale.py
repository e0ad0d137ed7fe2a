"""Memory and time of builds as a collection grows: 2M points and more, from real tracks.

    python bench/bench_scale.py [--copies 4 16] [--zooms 12 14 16] [--places N] [--baseline DIR]

The collection is made from the real runs in ../shared/data/chengdu-runs by
bench/collection.py: each copy shifts every track by a few kilometres and a year (a
club pooling its members' exports), written as plain GPX 1.1 with times into a
temporary folder. For each
size, in one run, at each zoom: a cold build (empty cache), a warm rebuild that counts
again (parse cache only), one with another sigma and one with another colormap
(counts from the counts cache),
each a fresh `geoheat build` process timed from outside with its peak RSS (wait4).
--baseline DIR runs the same builds with another checkout's geoheat (e.g. a worktree
of an older commit) for ratios in the same run.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from collection import SHARED_RUNS, make_collection  # bench/collection.py
from measure import run  # bench/measure.py: one measured process

ROOT = Path(__file__).resolve().parents[1]


def builds(tree: Path, collection: Path, zooms: list[int], work: Path) -> list[tuple]:
    """At each zoom: a cold build (an empty cache); a warm rebuild that counts again (the
    parse cache, no counts cache: what a new zoom or filter costs); a warm rebuild with
    another sigma and one with another colormap (the counts from the counts cache: what
    tuning the looks costs)."""
    rows = []
    for zoom in zooms:
        cache = work / f"cache-{tree.name}"
        shutil.rmtree(cache, ignore_errors=True)
        report = work / "report.json"
        base = [sys.executable, "-m", "geoheat", "build", str(collection), "--basemap",
                "none", "-q", "--cache", str(cache), "-o", str(work / "h.png"), "--zoom",
                str(zoom), "--report", str(report)]
        for kind, more in (("cold", []), ("recount", []), ("warm", ["--sigma", "2"]),
                           ("colour", ["--cmap", "viridis"])):
            if kind == "recount":
                shutil.rmtree(cache / "counts", ignore_errors=True)
            measured = run(base + more, cwd=tree)
            tiles = json.loads(report.read_text()).get("tiles")  # memory follows these
            rows.append((f"{kind} z{zoom}", measured.seconds, measured.peak_mb, tiles))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[4])
    parser.add_argument("--zooms", type=int, nargs="+", default=[12, 14, 16])
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--places", type=int, default=None,
                        help="copies take turns in this many places (the same tiles with "
                             "heat for any number of copies); default: a place each")
    parser.add_argument("--spread", action="store_true",
                        help="deal the activities out one by one over the places (with "
                             "--places 48: a city's street-zoom tile count)")
    parser.add_argument("--data", type=Path, default=SHARED_RUNS,
                        help="the GPX tracks to copy (default: ../shared/data/chengdu-runs)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found (the benchmark reads ../shared/data/chengdu-runs)")
    work = Path(tempfile.mkdtemp(prefix="geoheat-bench-scale-"))
    try:
        for copies in args.copies:
            collection = work / f"collection-{copies}"
            made = make_collection(collection, args.data, copies, args.places, args.spread)
            print(f"\n{made.description}")
            trees = [ROOT] + ([args.baseline] if args.baseline else [])
            results = {tree: builds(tree, collection, args.zooms, work) for tree in trees}
            print(f"{'build':<12} {'seconds':>8} {'peak MB':>8} {'x cold':>7} {'tiles':>6}"
                  + ("  baseline s / MB" if args.baseline else ""))
            mine = results[ROOT]
            for i, (name, seconds, peak, tiles) in enumerate(mine):
                cold = mine[i - i % 4][1]  # the cold build at the same zoom
                line = (f"{name:<12} {seconds:8.2f} {peak:8.0f} {seconds / cold:7.2f} "
                        f"{tiles if tiles is not None else '-':>6}")
                if args.baseline:
                    _, b_seconds, b_peak, _ = results[args.baseline][i]
                    line += f"  {b_seconds:6.2f} / {b_peak:5.0f}"
                print(line)
            shutil.rmtree(collection)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
