"""Benchmark `geoheat serve`: time to the first tile and per-tile times while panning,
against the full build's time per tile, on about 2 million points.

    python bench/bench_serve.py [--data ../shared/data/chengdu-runs] [--copies 4]
                                [--work /tmp/geoheat-bench-serve]

The collection (bench/collection.py): the real runs of chengdu-runs (~500,000 points)
copied side by side over a city's area (each copy a few km from the others, its times
a year later, so no copy is a duplicate of another), written as GPX into --work
(outside the repository; made once and reused). Then:

1. a cold build fills the parse cache (not timed for the comparison);
2. the full build, warm cache, zoom 14, no basemap (what `geoheat build` costs),
   divided by the heat tiles it draws at zoom 14: the build's time per tile;
3. `geoheat serve` in a fresh process (imports included, as a user starts it), warm
   cache: the time from the process's start, and from its "serving at" line, to the
   first zoom-14 tile over HTTP;
4. the first tile at each zoom (--zooms, 13-18 by default: the busiest tile of the
   tracks at that zoom, as a user zooming in on their streets asks it), then 50 tiles
   around it (p95), and the server's peak memory (VmHWM) after each zoom; and the first
   tile after a filter change;
5. panning at zoom 14 (and 16): a 1280x800 px window moved a tile at a time over the
   whole extent, row by row, each step requesting the tiles it newly shows with 6
   connections at once (as a browser does), each tile timed over HTTP.

Quote ratios, not seconds: the machines are shared and noisy.
"""

import argparse
import concurrent.futures
import http.client
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from collection import SHARED_RUNS, make_collection  # bench/collection.py

ZOOM = 14
WINDOW = (1280, 800)
CONNECTIONS = 6


def geoheat(*args, cache: Path) -> float:
    """Wall seconds of one `geoheat` command in a fresh process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoheat", *map(str, args), "--cache", str(cache),
                    "-q"], check=True)
    return time.perf_counter() - started


class Client:
    """Keep-alive HTTP connections to the server, one per thread."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.local = __import__("threading").local()

    def get(self, path: str) -> tuple[float, int, int]:
        """(seconds, status, bytes) of one GET."""
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=120)
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return time.perf_counter() - started, response.status, len(body)


def pan_paths(grid, zoom: int) -> list[list[str]]:
    """The tiles each step of a window panned a tile at a time over the grid newly shows."""
    size = 256
    tx0, ty0 = grid.col_off // size, grid.row_off // size
    tx1, ty1 = tx0 + grid.width // size, ty0 + grid.height // size
    across, down = WINDOW[0] // size + 1, WINDOW[1] // size + 1
    seen, steps = set(), []
    for ty in range(ty0 - 1, max(ty1 - down, ty0) + 1):
        row = range(tx0 - 1, max(tx1 - across, tx0) + 1)
        for tx in (row if (ty - ty0) % 2 == 0 else reversed(row)):  # boustrophedon
            new = [(x, y) for y in range(ty, ty + down + 1) for x in range(tx, tx + across + 1)
                   if (x, y) not in seen]
            seen.update(new)
            if new:
                steps.append([f"/heat/{zoom}/{x}/{y}.png" for x, y in new])
    return steps


def busiest_tile(xy, zoom: int) -> tuple[int, int]:
    """The tile at zoom holding the most track points."""
    from geoheat.tiles import world_pixels

    col, row = world_pixels(xy, zoom)
    tx, ty = (col // 256).astype(np.int64), (row // 256).astype(np.int64)
    keys, counts = np.unique(tx * 2**zoom + ty, return_counts=True)
    key = int(keys[np.argmax(counts)])
    return key // 2**zoom, key % 2**zoom


def server_memory(pid: int) -> tuple[float, float]:
    """The server's peak and current resident memory, GiB (Linux /proc)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmHWM", "VmRSS")):
                values[line.split(":")[0]] = int(line.split()[1]) / 2**20
    return values.get("VmHWM", float("nan")), values.get("VmRSS", float("nan"))


def png_encoders(renderer, keys, zoom: int) -> None:
    """Time per tile and size of geoheat's zlib PNG writer (levels 1, 6) and GDAL's PNG
    driver (through rasterio's MemoryFile), on the heat tiles of a level."""
    import warnings

    from rasterio.io import MemoryFile

    from geoheat.render import encode_png

    def gdal(rgba):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a tile needs no georeferencing
            with MemoryFile() as mem:
                with mem.open(driver="PNG", width=256, height=256, count=4,
                              dtype="uint8") as dst:
                    dst.write(rgba)
                return mem.read()

    tiles = [t for t in (renderer.rgba_tile(zoom, x, y) for x, y in keys) if t is not None]
    for name, encode in (("zlib level 1", lambda a: encode_png(a, 1)),
                         ("zlib level 6 (built and served)", lambda a: encode_png(a, 6)),
                         ("zlib level 9", lambda a: encode_png(a, 9)),
                         ("rasterio PNG driver", gdal)):
        encode(tiles[0])
        started = time.perf_counter()
        sizes = [len(encode(rgba)) for rgba in tiles]
        each = (time.perf_counter() - started) / len(tiles)
        print(f"PNG {name}: {each * 1000:.2f} ms, {np.mean(sizes) / 1024:.1f} KiB a tile "
              f"({len(tiles)} zoom-{zoom} tiles)")


def percentile(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def start_server(folder: Path, cache: Path):
    """`geoheat serve` on the folder in a fresh process: (process, Client)."""
    server = subprocess.Popen([sys.executable, "-m", "geoheat", "serve", str(folder), "--port",
                               "0", "--cache", str(cache), "-q"], stderr=subprocess.PIPE,
                              text=True)
    for line in server.stderr:
        if "serving at" in line:
            break
    else:
        sys.exit("serve did not start")
    url = line.split("serving at ")[1].split()[0]
    host, port = url.removeprefix("http://").strip("/").split(":")
    return server, Client(host, int(port))


def burst(folder: Path, cache: Path, zoom: int = 19, tiles: int = 60) -> None:
    """4 clients at once, each asking `tiles` distinct tiles at zoom (where the tracks
    are) under its own view (cdf, linear, the last years, local contrast); the server's
    peak memory, and its memory 3 s after."""
    import threading

    from geoheat.options import BuildOptions
    from geoheat.renderedtiles import load_renderer
    from geoheat.tiles import world_pixels

    renderer = load_renderer(BuildOptions(inputs=[folder], parse_cache=cache))
    col, row = world_pixels(renderer.selection(renderer.default_view).xy, zoom)
    keys = sorted(set(zip((col // 256).astype(int).tolist(), (row // 256).astype(int).tolist())))
    years = renderer.years
    del renderer
    pick = [keys[i] for i in np.random.default_rng(0).choice(len(keys), min(tiles, len(keys)),
                                                             replace=False)]
    views = ["s=cdf", "s=linear", f"y={years[-2] if len(years) > 1 else years[0]}-{years[-1]}"
             if years else "c=viridis", "n=local"]
    server, _ = start_server(folder, cache)
    try:
        host, port = _.host, _.port
        times = {}

        def client(query):
            own = Client(host, port)
            times[query] = [own.get(f"/heat/{zoom}/{x}/{y}.png?{query}")[0] for x, y in pick]

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(q,)) for q in views]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak, now = server_memory(server.pid)
        print(f"burst: 4 clients x {len(pick)} zoom-{zoom} tiles, views {', '.join(views)}: "
              f"{time.perf_counter() - started:.1f} s; per view p95 / max (ms): " + ", ".join(
                  f"{q} {percentile(t, 95):.0f} / {percentile(t, 100):.0f}"
                  for q, t in times.items()))
        time.sleep(3)
        print(f"burst: server peak memory {peak:.2f} GiB; {server_memory(server.pid)[1]:.2f} "
              f"GiB 3 s after")
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_RUNS)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--places", type=int, default=None,
                        help="places the copies take turns in (default: a place each)")
    parser.add_argument("--zooms", type=int, nargs="+", default=[13, 14, 15, 16, 17, 18],
                        help="zooms whose first tile is timed (besides the start zoom and 14)")
    parser.add_argument("--pan-zooms", type=int, nargs="*", default=[ZOOM, 16])
    parser.add_argument("--work", type=Path, default=Path("/tmp/geoheat-bench-serve"))
    parser.add_argument("--burst", action="store_true",
                        help="only the burst: 4 clients at once, each 60 distinct zoom-19 "
                             "tiles under its own view; the server's peak memory and after")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: not found (the real runs live in ../shared/data)")
    folder, cache = args.work / f"{args.data.name}-x{args.copies}", args.work / "cache"
    made = make_collection(folder, args.data, args.copies, args.places)
    print(f"collection: {made.description}")
    if args.burst:
        return burst(folder, args.work / "cache")

    out = args.work / "out"
    out.mkdir(exist_ok=True)
    geoheat("build", folder, "--zoom", ZOOM, "--basemap", "none", "-o", out / "cold.png",
            cache=cache)  # fills the parse cache
    build_s = min(geoheat("build", folder, "--zoom", ZOOM, "--basemap", "none", "-o",
                          out / f"warm{i}.png", cache=cache) for i in range(2))
    # The tiles to ask for, found before the server starts (not to load the machine then).
    from geoheat.options import BuildOptions
    from geoheat.renderedtiles import load_renderer

    renderer = load_renderer(BuildOptions(inputs=[folder], parse_cache=cache))
    start_zoom = renderer.start_zoom()
    zooms = sorted({start_zoom, ZOOM, *args.zooms})
    chosen = renderer.selection(renderer.default_view)
    from geoheat.tiles import grid_covering

    busiest = {z: busiest_tile(chosen.xy, z) for z in zooms}
    grids = {z: grid_covering(chosen.area, z) for z in {*zooms, *args.pan_zooms}}
    years, types = renderer.years, renderer.types
    lit_zoom = renderer.lit_tiles(ZOOM)
    png_encoders(renderer, lit_zoom, ZOOM)
    del renderer, chosen
    per_tile_build = build_s / len(lit_zoom)
    print(f"full build, warm cache, zoom {ZOOM}: {build_s:.2f} s for {len(lit_zoom)} heat "
          f"tiles = {per_tile_build * 1000:.1f} ms per tile")

    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "geoheat", "serve", str(folder), "--port",
                               "0", "--cache", str(cache), "-q"], stderr=subprocess.PIPE,
                              text=True)
    try:
        for line in server.stderr:
            if "serving at" in line:
                break
        else:
            sys.exit("serve did not start")
        ready = time.perf_counter()
        url = line.split("serving at ")[1].split()[0]
        host, port = url.removeprefix("http://").strip("/").split(":")
        client = Client(host, int(port))
        x, y = busiest[start_zoom]
        seconds, status, _ = client.get(f"/heat/{start_zoom}/{x}/{y}.png")
        first = time.perf_counter() - started
        assert status == 200
        print(f"serve: ready {ready - started:.2f} s after start; first tile (zoom {start_zoom}, "
              f"where a 1280x800 page opens) {first:.2f} s after start, "
              f"{(first - (ready - started)) * 1000:.0f} ms after ready")
        for zoom in zooms:
            kx, ky = busiest[zoom]
            seconds, status, _ = client.get(f"/heat/{zoom}/{kx}/{ky}.png")
            around = [(kx + dx, ky + dy) for dy in range(-2, 3) for dx in range(-5, 5)]
            again = [client.get(f"/heat/{zoom}/{a}/{b}.png")[0] for a, b in around]
            peak, now = server_memory(server.pid)
            print(f"zoom {zoom}: first tile {seconds * 1000:.0f} ms, then 50 tiles around it "
                  f"p95 {percentile(again, 95):.1f} ms; server peak memory {peak:.2f} GiB "
                  f"(now {now:.2f})")
        for zoom in args.pan_zooms:
            steps = pan_paths(grids[zoom], zoom)
            times = []
            with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
                pan_started = time.perf_counter()
                for paths in steps:
                    for seconds, status, _ in pool.map(client.get, paths):
                        assert status == 200, status
                        times.append(seconds)
                pan_s = time.perf_counter() - pan_started
            print(f"panning at zoom {zoom}: {len(times)} tiles in {len(steps)} steps, "
                  f"p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms, "
                  f"max {percentile(times, 100):.1f} ms ({len(times) / pan_s:.0f} tiles/s with "
                  f"{CONNECTIONS} connections)")
            if zoom == ZOOM:
                print(f"  p95 per tile / the full build's time per tile: "
                      f"{percentile(times, 95) / 1000 / per_tile_build:.3f}")
        x, y = busiest[ZOOM]
        query = "&".join([*([f"t={types[0]}"] if types else []),
                          *([f"y={years[len(years) // 2]}-{years[-1]}"] if years else []),
                          "c=viridis"])
        seconds, status, _ = client.get(f"/heat/{ZOOM}/{x}/{y}.png?{query}")
        assert status == 200
        print(f"a filter change ({query}): first tile {seconds * 1000:.0f} ms (a new "
              f"selection and level)")
        print(f"server peak memory over the run: {server_memory(server.pid)[0]:.2f} GiB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
