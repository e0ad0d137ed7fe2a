"""Time finding duplicates among many activities that share one start minute.

    python bench/bench_dedupe.py [--sizes 1000 6000 20000] [--repeat 3]

A converter that stamps its own run time into every file gives thousands of
activities one start minute (issue 28: 6,000 such files took 28 s). Three
collections, made in memory as the parse cache's summaries stand for them (no files):

- `places`: every activity somewhere else (10 m to 60 km apart), one start minute;
- `one place`: every activity from one doorstep, lengths 1-30 km, one start minute;
- `days`: real-looking: one activity a day, every tenth recorded twice (a copy).

Run it with another checkout's geoheat first on PYTHONPATH for the before figures
(`PYTHONPATH=/path/to/old python bench/bench_dedupe.py`); each case is the best of
--repeat runs of `activities.drop_duplicates`, in this process.
"""

import argparse
import time
from datetime import datetime, timedelta, timezone

import numpy as np

from geoheat.activities import drop_duplicates
from geoheat.cache import ParsedFile
from geoheat.projection import project
from geoheat.summary import summarize

START = datetime(2020, 6, 1, 19, 1, tzinfo=timezone.utc)


def activity(name, lon, lat, km, start):
    """A straight track of km kilometres east from (lon, lat), 20 points."""
    lons = lon + np.linspace(0, km / 77.0, 20)
    xy = project(np.column_stack([lons, np.full(20, lat)]))
    offsets = np.array([0, 20], dtype=np.int64)
    return ParsedFile(name, xy, offsets, start, summary=summarize(xy, offsets))


def collection(kind: str, n: int, rng) -> list[ParsedFile]:
    if kind == "places":
        return [activity(f"{i}", 10 + rng.uniform(0, 0.8), 46 + rng.uniform(0, 0.5),
                         rng.uniform(1, 30), START + timedelta(seconds=int(rng.integers(60))))
                for i in range(n)]
    if kind == "one place":
        return [activity(f"{i}", 10.0, 46.0, rng.uniform(1, 30),
                         START + timedelta(seconds=int(rng.integers(60)))) for i in range(n)]
    days = [activity(f"{i}", 10 + rng.uniform(0, 0.05), 46 + rng.uniform(0, 0.05),
                     rng.uniform(1, 30), START + timedelta(days=i)) for i in range(n)]
    return days + [a._replace(name=a.name + "-copy") for a in days[::10]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 6000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(28)
    print("| case | activities | kept | seconds |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ("places", "one place", "days"):
        for n in args.sizes:
            activities = collection(kind, n, rng)
            best = float("inf")
            for _ in range(args.repeat):
                began = time.perf_counter()
                kept, _ = drop_duplicates(activities)
                best = min(best, time.perf_counter() - began)
            print(f"| {kind} | {len(activities):,} | {len(kept):,} | {best:.3f} |", flush=True)


if __name__ == "__main__":
    main()
