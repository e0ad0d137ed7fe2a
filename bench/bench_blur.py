"""The blur alone, on threads: CPU and wall seconds of each level's blur, per --workers.

    python bench/bench_blur.py [--data ../shared/data/chengdu-runs] [--zoom 16] [--sigma 1]
        [--workers 1 2] [--repeat 3] [--cache DIR] [--baseline CHECKOUT]

Builds the data once at --zoom (a PNG and the heat GeoTIFF with its overviews, no
basemap; the parse and counts caches in --cache, kept for the next runs), keeping the
scaled heat of every level as the build hands it to the blur. Then blurs the levels
again, --repeat rounds, each round every --workers setting in turn (and --baseline's
blur: another checkout's geoheat/heat.py, as it is, called without workers), and
prints the median CPU and wall seconds (and the fastest wall) of the top level's blur
and of the levels below; then the blur's peak of memory (numpy's arrays, tracemalloc: one run each)
and whether every setting made the same heat, bit for bit. Wall seconds with more
than one worker need idle cores: quote them with the machine's load.
"""

import argparse
import functools
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"
sys.path.insert(0, str(ROOT))

import geoheat  # noqa: E402
from geoheat import heat, pipeline, pyramid  # noqa: E402
from geoheat.checks import available_cores  # noqa: E402


def recorded_levels(data: Path, zoom: int, sigma: float, cache: Path) -> list[tuple]:
    """(scaled heat, sigma, grid) of every blur a build makes, the top level's first."""
    calls = []

    def recording(scaled, sigma, grid, only=None, **settings):
        calls.append((scaled, sigma, grid))
        return heat.blur_tiles(scaled, sigma, grid, only=only, **settings)

    users = [m for m in (pipeline, pyramid) if getattr(m, "blur_tiles", None) is heat.blur_tiles]
    with tempfile.TemporaryDirectory(prefix="geoheat-bench-blur-") as work:
        for module in users:
            module.blur_tiles = recording
        try:
            geoheat.build([str(data)], str(Path(work) / "heat.png"), zoom=zoom, sigma=sigma,
                          basemap=None, parse_cache=str(cache))
        finally:
            for module in users:
                module.blur_tiles = heat.blur_tiles
    return calls


def baseline_blur(checkout: Path):
    """Another checkout's blur_tiles (its heat.py on this geoheat's other modules)."""
    spec = importlib.util.spec_from_file_location("geoheat._baseline_heat",
                                                  checkout / "geoheat" / "heat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.blur_tiles


def same(a, b) -> bool:
    """Whether two blurred levels hold the same cells, bit for bit."""
    if set(a) != set(b):
        return False
    for key, mask, cells in a.parts():
        other_mask, other_cells = b.cells(key)
        if not (mask == other_mask).all() or cells.tobytes() != other_cells.tobytes():
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--zoom", type=int, default=16)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None,
                        help="parse and counts cache (default: a new temporary folder)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout whose blur is timed in the same rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="geoheat-bench-blur-cache-") as spare:
        calls = recorded_levels(args.data, args.zoom, args.sigma, args.cache or Path(spare))
    settings = {f"{n} worker{'s' * (n > 1)}": functools.partial(heat.blur_tiles, workers=n)
                for n in args.workers}
    if args.baseline is not None:
        settings[f"baseline {args.baseline.name}"] = baseline_blur(args.baseline)
    try:
        load = "load average %.1f, %.1f, %.1f" % os.getloadavg()
    except OSError:
        load = "load unknown"
    print(f"{args.data} at zoom {args.zoom}, sigma {args.sigma}: levels "
          + ", ".join(f"z{grid.zoom} {len(scaled):,} tiles" for scaled, _, grid in calls)
          + f"; {available_cores()} cores, {load}")

    times = {name: {"top": [], "below": []} for name in settings}
    made = {}
    for _ in range(args.repeat):
        for name, blur in settings.items():
            for part, levels in (("top", calls[:1]), ("below", calls[1:])):
                wall, cpu = time.perf_counter(), time.process_time()
                for call in levels:
                    made.setdefault(name, []).append(blur(*call))
                times[name][part].append((time.perf_counter() - wall, time.process_time() - cpu))
            first = made.setdefault("first", made[name])
            if not all(same(a, b) for a, b in zip(first, made.pop(name))):
                sys.exit(f"{name}: not the same heat as {next(iter(settings))}")
    peaks = {}
    for name, blur in settings.items():
        tracemalloc.start()
        blur(*calls[0])
        peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

    print()
    print("| blur | top level CPU s | wall s | levels below CPU s | wall s | top's peak MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in settings:
        cells = []
        for part in ("top", "below"):
            cpu, wall = ([t[i] for t in times[name][part]] for i in (1, 0))
            cells += [f"{statistics.median(cpu):.3f}",
                      f"{statistics.median(wall):.3f} ({min(wall):.3f})"]
        print(f"| {name} | " + " | ".join(cells) + f" | {peaks[name]:.0f} |")
    print(f"\nmedians of {args.repeat} rounds (the fastest wall in brackets); every setting's "
          "heat the same, bit for bit")


if __name__ == "__main__":
    main()
