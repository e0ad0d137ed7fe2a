"""What the serving tests share (test_serve, test_mbtilesfile, test_pmtilesfile,
test_staticsite): a server in a thread and requests to it over HTTP, `geoheat serve` in
a process of its own, tile files, and the page in headless Chromium."""

import contextlib
import http.client
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from geoheat.cli import cli
from geoheat.options import BuildOptions
from geoheat.reading import read_files
from geoheat.render import Renderer, encode_png
from geoheat.serve import make_server
from geoheat.sources import find_sources

SAMPLES = Path(__file__).resolve().parents[1] / "gpx"
ZOOM = 14


def decode(data: bytes) -> np.ndarray:
    """PNG bytes as (4, h, w) RGBA, by GDAL (an opaque RGB tile gets alpha 255)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as src:
            pixels = src.read()
    if pixels.shape[0] == 3:
        pixels = np.concatenate([pixels, np.full((1, *pixels.shape[1:]), 255, np.uint8)])
    return pixels


def mbtiles_tiles(path: Path) -> dict:
    """{(z, x, y): RGBA} of an MBTiles file, XYZ rows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")
        return {(z, x, 2**z - 1 - row): decode(data) for z, x, row, data in rows}


def renderer_for(options: BuildOptions, **kwargs) -> Renderer:
    sources = find_sources(options.inputs, options.pattern)
    return Renderer(options, read_files(sources, options.parse_cache, options.jobs), **kwargs)


@pytest.fixture(scope="module")
def samples_renderer():
    """A renderer of the samples with the default settings (a test module's own)."""
    return renderer_for(BuildOptions(inputs=[SAMPLES]))


@contextlib.contextmanager
def running(source):
    """A server for the source on a free loopback port, in a thread; stopped after."""
    server = make_server(source, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(server, path: str, headers=None, method="GET"):
    """(status, headers, body) of one request to the server."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def start_command(*args, cwd=None):
    """`geoheat serve ARGS` in a process of its own; returns it and the URL it printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "geoheat", "serve", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=cwd)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "serving at" in line:
            return process, line.split("serving at ")[1].split()[0], lines
    process.wait(10)
    raise AssertionError("".join(lines))


def ask(url: str, target: str) -> tuple[int, bytes]:
    """One GET of target from a server start_command started at url: (status, body)."""
    host, port = url.removeprefix("http://").strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def stopped(process, sig=signal.SIGINT) -> str:
    """Stop a server start_command started, as Ctrl-C (or a service manager's SIGTERM)
    does; what it wrote on stderr since. Killed if it has not ended within 20 s."""
    try:
        process.send_signal(sig)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.stderr.read()


# The page in a real browser.

def chromium() -> str:
    """Debian's chromium, or skip saying how to get it (.ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    return found


def screenshot(url: str, path: Path, size=(800, 600)) -> np.ndarray:
    """The page at url as headless Chromium draws it: (3, h, w) RGB."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
             f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
             "--virtual-time-budget=10000", f"--screenshot={path}", url],
            capture_output=True, text=True, timeout=120)
    assert path.is_file(), result.stderr[-2000:]
    return decode(path.read_bytes())[:3]


def expected_screen(renderer, zoom, origin, size, background, view=None, cmap=None):
    """What the heat over a plain background looks like from world pixel origin."""
    from geoheat.tiles import TILE_SIZE

    width, height = size
    picture = np.zeros((4, height, width), dtype=np.uint8)
    col0, row0 = origin
    for ty in range(row0 // TILE_SIZE, (row0 + height - 1) // TILE_SIZE + 1):
        for tx in range(col0 // TILE_SIZE, (col0 + width - 1) // TILE_SIZE + 1):
            rgba = renderer.rgba_tile(zoom, tx, ty, view, cmap)
            if rgba is None:
                continue
            top, left = ty * TILE_SIZE - row0, tx * TILE_SIZE - col0
            r0, c0 = max(top, 0), max(left, 0)
            r1, c1 = min(top + TILE_SIZE, height), min(left + TILE_SIZE, width)
            picture[:, r0:r1, c0:c1] = rgba[:, r0 - top:r1 - top, c0 - left:c1 - left]
    alpha = picture[3:].astype(float) / 255
    rgb = picture[:3] * alpha + np.array(background).reshape(3, 1, 1) * (1 - alpha)
    return np.rint(rgb).astype(np.uint8), picture[3]


def assert_heat_on_screen(url, renderer, zoom, filters, view, cmap, shot_path):
    """Chromium's screenshot of the page at url, centred on the heat at zoom, shows the
    renderer's tiles for the view and colormap, pixel for pixel (within a pixel's shift)."""
    from geoheat.projection import unproject
    from geoheat.tiles import ORIGIN_SHIFT, resolution

    size = (800, 600)
    keys = renderer.lit_tiles(zoom, view)
    # The view's centre: a quarter pixel past a pixel corner in the middle of the lit
    # tiles, so Leaflet's rounding of the view's corner is not left to float error.
    centre = (int(np.mean([x for x, _ in keys]) * 256 + 128),
              int(np.mean([y for _, y in keys]) * 256 + 128))
    res = resolution(zoom)
    lon, lat = (float(v) for v in unproject(np.array([[
        -ORIGIN_SHIFT + (centre[0] + 0.25) * res, ORIGIN_SHIFT - (centre[1] + 0.25) * res]]))[0])
    shot = screenshot(f"{url}#map={zoom}/{lat!r}/{lon!r}{filters}", shot_path,
                      size)
    # Leave out the controls: zoom buttons (top left), filters (top right), attribution,
    # the legend (bottom left).
    free = np.ones((size[1], size[0]), dtype=bool)
    free[:90, :60] = free[:170, 600:] = free[-30:, 420:] = free[-100:, :270] = False
    # The legend is there: its pale box, bottom left, over the dark (or light) ground.
    box = shot[:, -40:-25, 20:200].astype(float).mean(axis=0)
    assert np.median(box) > 200 or cmap == "light", np.median(box)
    # Where Leaflet puts the view's corner, within a pixel or two (headless Chromium's
    # viewport may be a pixel shorter than its window): the best of the small shifts.
    best = (0.0, 0.0, 0, None)
    for dx in range(-2, 3):
        for dy in range(-2, 3):
            want, alpha = expected_screen(
                renderer, zoom,
                (centre[0] - size[0] // 2 + dx, centre[1] - size[1] // 2 + dy), size,
                (242, 239, 233) if cmap == "light" else (17, 17, 17),  # app.css's, no basemap
                view, cmap)
            hot, cold = free & (alpha == 255), free & (alpha == 0)
            close = np.abs(shot.astype(int) - want.astype(int)).max(axis=0) <= 8
            best = max(best, (close[hot].mean(), close[cold].mean(), int(hot.sum()), (dx, dy)))
    heat_share, cold_share, hot_pixels, shift = best
    assert hot_pixels > 500, "the view should hold heat"
    assert heat_share > 0.97, f"heat pixels in the heat's colours: {heat_share:.3f} at {shift}"
    assert cold_share > 0.99, f"no heat where there is none: {cold_share:.3f} at {shift}"


# Tile files, and `geoheat serve` refusing one.

def noise_png(seed: int, size: int = 64) -> bytes:
    """A PNG that does not deflate much (~size * size * 4 bytes)."""
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, (4, size, size), dtype=np.uint8))


def refusal(path: Path, monkeypatch) -> tuple[int, list[str]]:
    """`geoheat serve PATH`'s exit code and stderr lines, up to serving (not served)."""
    import geoheat.serve as serve_module

    monkeypatch.setattr(serve_module, "run_server", lambda *a, **k: None)
    result = CliRunner().invoke(cli, ["serve", str(path), "--port", "0"])
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr.strip().splitlines()
