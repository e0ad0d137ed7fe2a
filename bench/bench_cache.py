"""What the parse cache's checks cost: a warm rebuild with and without them, same run.

    python bench/bench_cache.py [--data ../shared/data/chengdu-runs] [--rounds 5]

Three caches are filled from the same files, then rebuilt from in turn, round
after round (so drift in the machine's load hits all three alike):

- checked: as geoheat is, a CRC-32 over each entry and a finite-points check;
- blake2b: the same with a BLAKE2b-128 checksum instead, the alternative considered;
- no checksum: the checksum made a constant (neither computed nor compared);
- neither: also without the finite-points check (what format 3 did on load).

Printed per variant: the median rebuild (geoheat.build, zoom 14, sigma 2, no
basemap: the bench_build.py "warm rebuild" case, in one process, so start-up and
imports are left out and the checks are a larger share), the median of
cache.load over every file alone, and the ratios against "neither".

Chengdu runs (184 files, 486,141 points, 8.1 MB of entries), 2-core CI machine,
2026-11-26, median of 15 rounds; two runs, the second while the machine was busy:

| variant | rebuild s | x neither | load ms | x neither | busy: rebuild s | x | load ms | x |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| checked (as shipped) | 0.123 | 1.02 | 13.5 | 1.39 | 0.283 | 1.06 | 30.4 | 1.33 |
| blake2b | 0.126 | 1.05 | 17.9 | 1.84 | 0.305 | 1.14 | 35.8 | 1.57 |
| no checksum | 0.122 | 1.02 | 11.8 | 1.21 | 0.277 | 1.04 | 25.1 | 1.10 |
| neither | 0.120 | 1.00 | 9.7 | 1.00 | 0.267 | 1.00 | 22.8 | 1.00 |

The CRC-32 costs 1.5-5 ms a rebuild, the finite-points check about 2 ms: the
checks together are 2-6% of an in-process rebuild, under 1% of the ~0.84 s a
user waits for one (bench_build.py's fresh-process "warm rebuild").
"""

import argparse
import hashlib
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import geoheat
from geoheat import cache, countcache
from geoheat.sources import find_sources

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"
VARIANTS = ("checked", "blake2b", "no checksum", "neither")


@contextmanager
def variant(name: str):
    """The cache module as the variant has it; put back afterwards."""
    checksum, size, plausible = cache.checksum, cache._CHECKSUM_SIZE, cache._plausible
    end = cache._CHECKSUMS_END
    # Every rebuild loads the points: the counts cache would spare it all of them.
    counts_load, countcache.load = countcache.load, lambda *args, **kwargs: None
    if name == "blake2b":
        cache._CHECKSUM_SIZE = 16
        cache._CHECKSUMS_END = len(cache._MAGIC) + 4 * cache._CHECKSUM_SIZE  # two on a line
        cache.checksum = lambda data: hashlib.blake2b(data, digest_size=16).hexdigest().encode()
    if name in ("no checksum", "neither"):
        cache.checksum = lambda data: b"0" * (2 * cache._CHECKSUM_SIZE)
    if name == "neither":
        cache._plausible = lambda offsets, xy: True
    try:
        yield
    finally:
        cache.checksum, cache._CHECKSUM_SIZE, cache._plausible = checksum, size, plausible
        cache._CHECKSUMS_END = end
        countcache.load = counts_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sources = find_sources([args.data])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stores = {name: tmp / name.replace(" ", "-") for name in VARIANTS}
        points = 0
        for name in VARIANTS:  # fill each cache (and warm the page cache)
            with variant(name):
                result = geoheat.build([args.data], tmp / "out.png", zoom=14, sigma=2,
                                       parse_cache=stores[name])
                points = result.points_used
        rebuild = {name: [] for name in VARIANTS}
        load = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name in VARIANTS:
                with variant(name):
                    started = time.perf_counter()
                    loaded = [cache.load(stores[name], source) for source in sources]
                    load[name].append(time.perf_counter() - started)
                    assert all(entry is not None for entry in loaded), name
                    started = time.perf_counter()
                    geoheat.build([args.data], tmp / "out.png", zoom=14, sigma=2,
                                  parse_cache=stores[name])
                    rebuild[name].append(time.perf_counter() - started)
        mb = sum(p.stat().st_size for p in stores["checked"].rglob("*.bin")) / 1e6
    print(f"{args.data}: {len(sources)} files, {points:,} points, {mb:.1f} MB of cache entries, "
          f"median of {args.rounds} rounds")
    print("| variant | warm rebuild s | x neither | cache.load, all files, ms | x neither |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base_rebuild = statistics.median(rebuild["neither"])
    base_load = statistics.median(load["neither"])
    for name in VARIANTS:
        r, l = statistics.median(rebuild[name]), statistics.median(load[name])
        print(f"| {name} | {r:.3f} | {r / base_rebuild:.3f} | {l * 1000:.1f} | "
              f"{l / base_load:.2f} |")


if __name__ == "__main__":
    main()
