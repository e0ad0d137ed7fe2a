"""What the basemap costs once its tiles are cached: build with a warm cache vs --basemap none.

    python bench/bench_basemap.py [--data DIR ...] [--zoom 14] [--repeat 3]

Tiles come from a tile server this script starts on 127.0.0.1 (generated map-like
PNG tiles), never from a public server. The cache is warmed by one build, then
each case runs --repeat times in this process and the median wall time is
printed, with the ratio to --basemap none measured in the same run.
"""

import argparse
import statistics
import tempfile
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

import geoheat

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)  # the generated tiles


def map_tile(x: int, y: int) -> bytes:
    """A light, street-like 256-pixel PNG tile."""
    rng = np.random.default_rng(x * 7919 + y)
    pixels = np.full((3, 256, 256), 240, dtype=np.uint8)
    for _ in range(6):
        pixels[:, rng.integers(0, 254), :] = 190
        pixels[:, :, rng.integers(0, 254)] = 190
    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=256, height=256, count=3, dtype="uint8") as dst:
            dst.write(pixels)
        return mem.read()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        _, x, y = self.path.strip("/").removesuffix(".png").split("/")
        body = map_tile(int(x), int(y))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400")
        self.end_headers()
        self.wfile.write(body)


def timed(repeat, **kwargs) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        geoheat.build(**kwargs)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[ROOT / "gpx", ROOT.parent / "shared" / "data" / "chengdu-runs"])
    parser.add_argument("--zoom", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    work = Path(tempfile.mkdtemp(prefix="geoheat-bench-basemap-"))
    print(f"{'input':<40} {'tiles':>5} {'none s':>7} {'warm s':>7} {'x none':>7}")
    for data in args.data:
        if not data.is_dir():
            print(f"{str(data):<40} skipped: not found")
            continue
        common = {"inputs": [data], "output": work / "h.png", "zoom": args.zoom,
                  "tile_cache": work / "cache", "max_tiles": 10_000}
        warm = geoheat.build(**common, basemap=url)  # fills the cache
        none = timed(args.repeat, **common, basemap=None)
        cached = timed(args.repeat, **common, basemap=url)
        name = f"{data.name} (zoom {args.zoom}, {warm.grid.width}x{warm.grid.height})"
        print(f"{name:<40} {warm.basemap.tiles:5} {none:7.2f} {cached:7.2f} {cached / none:7.2f}")
    server.shutdown()


if __name__ == "__main__":
    main()
