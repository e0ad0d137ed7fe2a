"""`geoheat serve` and `build --site`: tiles rendered on request equal the build's, the
server's routes over real HTTP on 127.0.0.1, the page in a real (headless) browser."""

import contextlib
import http.client
import json
import os
import re
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

import geoheat
from geoheat.cli import cli
from geoheat.options import BuildOptions
from geoheat.reading import read_files
from geoheat.render import EMPTY_PNG, METATILE, BytesLRU, Renderer, encode_png
from geoheat.mbtilesfile import MBTilesFile
from geoheat.page import leaflet_dir
from geoheat.pmtilesfile import PMTilesFile
from geoheat.renderedtiles import RenderedTiles
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


@pytest.fixture(scope="module")
def server(samples_renderer):
    with running(RenderedTiles(samples_renderer)) as server:
        yield server


# Rendering: a served tile is the build's tile.

@pytest.mark.parametrize("settings", [
    {},
    {"sigma": 2.5, "scaling": "linear", "cmap": "viridis"},
    {"mode": "points", "sigma": 0, "types": ["Run"]},
    {"years": [2024], "extent": "all", "style": "strava"},
])
def test_rendered_tiles_are_the_builds_mbtiles_tiles(tmp_path, settings):
    options = BuildOptions(inputs=[SAMPLES], output=tmp_path / "h.png", zoom=ZOOM,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=ZOOM, max_zoom=ZOOM,
                           **settings)
    geoheat.build(options)
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    renderer = renderer_for(options)
    assert {(ZOOM, x, y) for x, y in renderer.lit_tiles(ZOOM)} == set(built)
    for (z, x, y), pixels in built.items():
        rendered = renderer.rgba_tile(z, x, y)
        np.testing.assert_array_equal(rendered, pixels, err_msg=f"tile {z}/{x}/{y}")
        np.testing.assert_array_equal(decode(renderer.png_tile(z, x, y)), pixels)


def test_every_pyramid_level_of_the_mbtiles_is_served_the_same(tmp_path):
    # The build's levels below its zoom and above it (to street zoom, 16) come from their
    # own counts (issues 12, 20); the renderer makes any zoom the same way: every stored
    # tile, every level, is served.
    options = BuildOptions(inputs=[SAMPLES], output=tmp_path / "h.png", zoom=ZOOM,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=ZOOM - 5)
    geoheat.build(options)
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    assert {z for z, _, _ in built} == set(range(ZOOM - 5, 17))
    renderer = renderer_for(options)
    for (z, x, y), pixels in built.items():
        np.testing.assert_array_equal(renderer.rgba_tile(z, x, y), pixels,
                                      err_msg=f"tile {z}/{x}/{y}")


def test_real_runs_tiles_are_the_builds(tmp_path):
    """The 184 chengdu runs (times, pauses, GPS jumps): every served tile at zoom 15 and
    at zoom 17 is the build's tile."""
    from .conftest import shared_folder

    folder = shared_folder("chengdu-runs")
    cache = tmp_path / "cache"
    for zoom in (15, 17):
        options = BuildOptions(inputs=[folder], output=tmp_path / "h.png", zoom=zoom,
                               mbtiles=tmp_path / "h.mbtiles", min_zoom=zoom, max_zoom=zoom,
                               parse_cache=cache, jobs=2, sigma=1.5)
        geoheat.build(options)
        built = mbtiles_tiles(tmp_path / "h.mbtiles")
        renderer = renderer_for(options)  # from the parse cache the build filled
        assert len(built) > 10 and len(renderer.lit_tiles(zoom)) == len(built)
        for (z, x, y), pixels in built.items():
            np.testing.assert_array_equal(renderer.rgba_tile(z, x, y), pixels)


def mbtiles_bytes(path: Path) -> dict:
    """{(z, x, y): PNG bytes} of an MBTiles file, XYZ rows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")
        return {(z, x, 2**z - 1 - row): bytes(data) for z, x, row, data in rows}


@pytest.mark.parametrize("normalize", ["global", "local"])
@pytest.mark.parametrize("sample_tiles", [None, 3])
def test_served_site_and_mbtiles_tiles_are_byte_equal(tmp_path, monkeypatch, normalize,
                                                      sample_tiles):
    """One way to make a level (issue 22): build --site writes the tiles the build put in
    its MBTiles, and geoheat serve (with the build's --normalize, or a default server
    asked for it with ?n=) answers the same bytes over HTTP; also when the levels are
    large enough to be ranked on a sample of their tiles (sample_tiles)."""
    import geoheat.level
    import geoheat.render

    if sample_tiles is not None:  # and served tile by tile, the sample counted alone
        monkeypatch.setattr(geoheat.level, "SAMPLE_TILES", sample_tiles)
        monkeypatch.setattr(geoheat.render, "WHOLE_TILES", 0)
    site, mbtiles = tmp_path / "site", tmp_path / "h.mbtiles"
    result = CliRunner().invoke(cli, [
        "build", str(SAMPLES), "--zoom", "15", "-o", str(tmp_path / "h.png"), "--basemap",
        "none", "--mbtiles", str(mbtiles), "--min-zoom", "12", "--normalize", normalize,
        "--sigma", "1.5", "--site", str(site), "--no-cache", "-j", "1"])
    assert result.exit_code == 0, result.output
    built = mbtiles_bytes(mbtiles)
    # From --min-zoom to street zoom (16, above the build's zoom by default).
    assert {z for z, _, _ in built} == {12, 13, 14, 15, 16} and len(built) > 40
    if sample_tiles is not None:  # the top levels really are sampled
        renderer = renderer_for(BuildOptions(inputs=[SAMPLES]))
        plan = renderer.selection(renderer.default_view).plan
        assert geoheat.level.modulus(plan, 15) > 1
    written = {(int(p.parts[-3]), int(p.parts[-2]), int(p.stem)): p.read_bytes()
               for p in (site / "tiles").glob("*/*/*.png")}
    assert written == built
    served = renderer_for(BuildOptions(inputs=[SAMPLES], normalize=normalize, sigma=1.5))
    default = renderer_for(BuildOptions(inputs=[SAMPLES], sigma=1.5))
    with running(RenderedTiles(served)) as one, running(RenderedTiles(default)) as other:
        for (z, x, y), data in built.items():
            status, headers, body = get(one, f"/heat/{z}/{x}/{y}.png")
            assert status == 200 and body == data, (z, x, y)
            status, _, body = get(other, f"/heat/{z}/{x}/{y}.png?n={normalize}")
            assert status == 200 and body == data, (z, x, y)
        # Every tile the build left out is empty when served.
        for z in (12, 16):
            for x, y in served.lit_tiles(z):
                assert (z, x, y) in built
    with contextlib.closing(sqlite3.connect(mbtiles)) as db:
        legend = json.loads(db.execute(
            "SELECT value FROM metadata WHERE name = 'geoheat_legend'").fetchone()[0])
    for z in (12, 15, 16):
        assert legend["legend"][str(z)] == [list(t) for t in served.legend(z)]


@pytest.mark.parametrize("zoom", [11, 12, 15])
def test_every_zoom_is_that_zooms_build(tmp_path, samples_renderer, zoom):
    """A level is a build at its zoom: the ranks over that level."""
    options = BuildOptions(inputs=[SAMPLES], output=tmp_path / "h.png", zoom=zoom,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=zoom, max_zoom=zoom)
    geoheat.build(options)
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    assert len(built) == len(samples_renderer.lit_tiles(zoom))
    for (z, x, y), pixels in built.items():
        np.testing.assert_array_equal(samples_renderer.rgba_tile(z, x, y), pixels)


def test_a_view_is_the_build_with_those_filters(samples_renderer):
    view = samples_renderer.view(types=["Run"], years=[2024, 2025], scaling="linear")
    filtered = renderer_for(BuildOptions(inputs=[SAMPLES], types=["Run"], years=[2024, 2025],
                                         scaling="linear"))
    keys = filtered.lit_tiles(ZOOM)
    assert keys and keys != samples_renderer.lit_tiles(ZOOM)
    for x, y in keys:
        np.testing.assert_array_equal(samples_renderer.rgba_tile(ZOOM, x, y, view, "magma"),
                                      filtered.rgba_tile(ZOOM, x, y, cmap="magma"))


def test_tiles_far_from_the_tracks_are_empty_without_making_a_level():
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]))
    assert renderer.rgba_tile(15, 0, 0) is None
    assert renderer.png_tile(15, 0, 0) == EMPTY_PNG
    assert renderer.levels.items == {}  # no level was made for it
    assert renderer.rgba_tile(20, 0, 0) is None and renderer.rgba_tile(3, 8, 0) is None


def test_png_encoder_round_trips():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (4, 256, 256), dtype=np.uint8)
    np.testing.assert_array_equal(decode(encode_png(rgba)), rgba)
    assert decode(EMPTY_PNG).max() == 0


def test_caches_are_bounded_in_bytes():
    lru = BytesLRU(1000)
    for i in range(50):
        lru.put(i, b"x" * 300)
    assert lru.bytes <= 1000 and len(lru.items) == 3 and lru.get(49) and lru.get(0) is None
    lru.put("huge", b"x" * 5000)  # larger than the whole cache: not kept
    assert lru.get("huge") is None and lru.bytes <= 1000
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]), tile_cache_bytes=20_000,
                            level_cache_bytes=30_000)
    for zoom in range(10, 17):
        for x, y in renderer.lit_tiles(zoom):
            renderer.png_tile(zoom, x, y)
    assert 0 < renderer.pngs.bytes <= 20_000
    assert 0 < renderer.levels.bytes <= 30_000 or len(renderer.levels.items) == 1
    small = renderer_for(BuildOptions(inputs=[SAMPLES]), selection_cache_bytes=1)
    for year in (2023, 2024, 2025):
        small.png_tile(ZOOM, *small.lit_tiles(ZOOM)[0], small.view(years=[year]))
    assert len(small.selections.items) == 1  # only the newest, however large


def test_each_metatile_and_scale_is_made_once_under_concurrent_requests(monkeypatch):
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]))
    made, scales = [], []
    real, real_scale = renderer._metatile, renderer._scale
    monkeypatch.setattr(renderer, "_metatile",
                        lambda z, mx, my, v: made.append((z, mx, my)) or real(z, mx, my, v))
    monkeypatch.setattr(renderer, "_scale", lambda z, v: scales.append(z) or real_scale(z, v))
    keys = renderer_for(BuildOptions(inputs=[SAMPLES])).lit_tiles(ZOOM)
    threads = [threading.Thread(target=renderer.png_tile, args=(ZOOM, *key)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scales == [ZOOM]
    assert sorted(made) == sorted({(ZOOM, x // METATILE, y // METATILE) for x, y in keys})


# The server's routes, over HTTP.

def test_page_meta_and_leaflet_are_served(server, samples_renderer):
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'src="leaflet/leaflet.js"' in page and 'src="app.js"' in page
    assert "https://" not in page.replace("https://tile.openstreetmap.org", "")  # no CDN
    status, headers, body = get(server, "/meta.json")
    meta = json.loads(body)
    assert status == 200 and meta["dynamic"] and meta["types"] == ["Ride", "Run"]
    assert meta["years"] == [2023, 2024, 2025] and meta["tiles"] == "heat/{z}/{x}/{y}.png"
    west, south, east, north = meta["bounds"]
    assert 14.4 < west < east < 14.6 and 46.0 < south < north < 46.1
    for name in ("leaflet.js", "leaflet.css", "images/layers.png"):
        status, headers, body = get(server, f"/leaflet/{name}")
        assert status == 200 and body == (leaflet_dir() / name).read_bytes()
    status, headers, body = get(server, "/app.js")
    assert status == 200 and b"L.tileLayer" in body and "javascript" in headers["Content-Type"]
    status, headers, body = get(server, "/app.js", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


def test_the_legend_over_http_is_the_builds(server, samples_renderer, tmp_path):
    # The page's legend for a zoom is the build's at that zoom: the QGIS style's items
    # (count and heat), for the view the tiles' query names.
    import re
    from xml.etree import ElementTree as ET

    status, headers, body = get(server, f"/legend/{ZOOM}.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    ticks = json.loads(body)["ticks"]
    assert ticks == [list(t) for t in samples_renderer.legend(ZOOM)] and len(ticks) >= 3
    geoheat.build([SAMPLES], tmp_path / "h.tif", zoom=ZOOM)
    items = ET.parse(tmp_path / "h.qml").getroot().findall(".//colorrampshader/item")[1:]
    built = [(float(i.get("value")), int(re.match(r"[\d,]+", i.get("label"))[0].replace(",", "")))
             for i in items]
    assert [n for _, n in built] == [n for _, n in ticks]
    assert [h for h, _ in built] == pytest.approx([h for h, _ in ticks], abs=1e-5)
    # Another view, another legend; a bad query is refused like a tile's.
    runs = json.loads(get(server, f"/legend/{ZOOM}.json?t=Run&s=linear")[2])["ticks"]
    view = samples_renderer.view(["Run"], None, "linear")
    assert runs == [list(t) for t in samples_renderer.legend(ZOOM, view)] and runs != ticks
    assert get(server, f"/legend/{ZOOM}.json?c=nope")[0] == 404
    assert get(server, "/legend/99.json")[0] == 404
    meta = json.loads(get(server, "/meta.json")[2])
    assert meta["unit"] == "passes" and not meta["local"] and len(meta["ramps"]["light"]) == 17


def test_tiles_over_http_with_etags(server, samples_renderer):
    view = samples_renderer.view(types=["Run"], years=[2023, 2024], scaling="linear")
    x, y = samples_renderer.lit_tiles(ZOOM, view)[0]
    status, headers, body = get(server, f"/heat/{ZOOM}/{x}/{y}.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(decode(body), samples_renderer.rgba_tile(ZOOM, x, y))
    etag = headers["ETag"]
    assert "max-age" in headers["Cache-Control"]
    status, headers, again = get(server, f"/heat/{ZOOM}/{x}/{y}.png",
                                 {"If-None-Match": etag})
    assert status == 304 and again == b""
    # Another view or colormap is another tile, with its own ETag.
    status, headers, other = get(server, f"/heat/{ZOOM}/{x}/{y}.png?c=viridis&s=linear&t=Run"
                                         "&y=2023-2024", {"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag and other != body
    np.testing.assert_array_equal(decode(other),
                                  samples_renderer.rgba_tile(ZOOM, x, y, view, "viridis"))
    # All types and all years, spelt empty.
    status, _, every = get(server, f"/heat/{ZOOM}/{x}/{y}.png?t=&y=")
    assert status == 200 and every == body
    # No heat there: a transparent tile.
    status, _, empty = get(server, "/heat/3/0/0.png")
    assert status == 200 and empty == EMPTY_PNG


@pytest.mark.parametrize("path", [
    "/heat/20/0/0.png", "/heat/14/16384/0.png", "/heat/14/0/16384.png", "/heat/1/2/0.png",
    "/heat/-1/0/0.png", "/heat/014/1/1.png", "/heat/14/01/1.png", "/heat/14/1/1",
    "/heat/14/1/1.png/", "/heat/14/1/1.jpg", "/heat/14/1/99999999999999999999.png",
    "/heat/14/1/1.png?c=nope", "/heat/14/1/1.png?s=log", "/heat/14/1/1.png?t=Swim",
    "/heat/14/1/1.png?y=2024", "/heat/14/1/1.png?y=2025-2024", "/heat/14/1/1.png?x=1",
    "/heat/14/1/1.png?c=hot&c=hot", "/heat/14/1/1.png?t=Run,Run", "/heat/../../etc/passwd",
    "/heat/14/..%2f..%2f/1.png", "/leaflet/../../setup.py", "/leaflet/leaflet-src.js",
    "/leaflet/%2e%2e/__init__.py", "/web/index.html", "/geoheat/web/app.js", "/etc/passwd",
    "/..", "//etc/passwd", "/index.html?x=1", "/app.js/", "/favicon.ico", "/heat/",
])
def test_anything_else_is_404_never_a_traceback(server, path):
    status, headers, body = get(server, path)
    assert status == 404 and body == b"not found\n"


def test_only_loopback_names_are_answered_on_loopback(server):
    """DNS rebinding: a page whose name points at 127.0.0.1 cannot read the tracks."""
    port = server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1",
                 f"[::1]:{port}", "[::1]", f"LOCALHOST:{port}"):
        assert get(server, "/meta.json", {"Host": host})[0] == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}",
                 f"localhost.evil.example:{port}", "", f"[::2]:{port}", "localhost:x"):
        status, _, body = get(server, "/meta.json", {"Host": host})
        assert (status, body) == (403, b"forbidden host\n"), host


def test_other_methods_and_a_broken_request_get_no_traceback(server):
    status, _, body = get(server, "/", method="POST")
    assert status == 501 and b"Traceback" not in body
    host, port = server.server_address[:2]
    with contextlib.closing(__import__("socket").create_connection((host, port), 5)) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        answer = sock.recv(4096)
    assert b"400" in answer and b"Traceback" not in answer


# Tile files.

@pytest.fixture(scope="module")
def built_mbtiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("built")
    geoheat.build([SAMPLES], folder / "h.png", zoom=ZOOM, mbtiles=folder / "h.mbtiles",
                  min_zoom=ZOOM - 2, max_zoom=ZOOM)
    return folder / "h.mbtiles"


def test_an_mbtiles_file_is_served_as_it_is(built_mbtiles):
    with contextlib.closing(sqlite3.connect(built_mbtiles)) as db:
        z, x, row, data = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data "
                                     "FROM tiles WHERE zoom_level = ?", (ZOOM,)).fetchone()
    with running(MBTilesFile(built_mbtiles)) as server:
        status, headers, body = get(server, f"/heat/{z}/{x}/{2**z - 1 - row}.png")
        assert status == 200 and body == data and headers["Content-Type"] == "image/png"
        assert get(server, f"/heat/{z}/{x}/{2**z - 1 - row}.png",
                   {"If-None-Match": headers["ETag"]})[0] == 304
        assert get(server, "/heat/0/0/0.png")[2] == EMPTY_PNG  # no such tile: transparent
        assert get(server, f"/heat/{z}/{x}/{2**z - 1 - row}.png?c=hot")[0] == 404
        meta = json.loads(get(server, "/meta.json")[2])
        assert not meta["dynamic"] and (meta["minzoom"], meta["maxzoom"]) == (ZOOM - 2, ZOOM)
        assert b'"dynamic": false' in get(server, "/")[2]


def test_a_pmtiles_file_is_served_as_it_is(tmp_path, samples_renderer):
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    keys = samples_renderer.lit_tiles(ZOOM)
    path = tmp_path / "h.pmtiles"
    with open(path, "wb") as f:
        writer = Writer(f)
        for x, y in sorted(keys, key=lambda k: zxy_to_tileid(ZOOM, *k)):
            writer.write_tile(zxy_to_tileid(ZOOM, x, y), samples_renderer.png_tile(ZOOM, x, y))
        writer.finalize({"tile_type": TileType.PNG, "tile_compression": Compression.NONE,
                         "min_zoom": ZOOM, "max_zoom": ZOOM, "min_lon_e7": 144_000_000,
                         "min_lat_e7": 460_000_000, "max_lon_e7": 146_000_000,
                         "max_lat_e7": 461_000_000, "center_zoom": ZOOM,
                         "center_lon_e7": 145_000_000, "center_lat_e7": 460_500_000},
                        {"name": "samples"})
    with running(PMTilesFile(path)) as server:
        x, y = keys[0]
        status, headers, body = get(server, f"/heat/{ZOOM}/{x}/{y}.png")
        assert status == 200 and body == samples_renderer.png_tile(ZOOM, x, y)
        meta = json.loads(get(server, "/meta.json")[2])
        assert meta["name"] == "samples" and meta["maxzoom"] == ZOOM and not meta["dynamic"]


# The command.

def test_serve_help_is_instant_and_lists_its_options():
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    for option in ("--host", "--port", "--open", "--type", "--year", "--sigma", "--cmap"):
        assert option in help_text
    code = ("import sys; from geoheat.cli import cli\n"
            "try: cli(['serve', '--help'])\nexcept SystemExit: pass\n"
            "heavy = {'numpy', 'rasterio', 'fiona', 'scipy', 'http.server'} & set(sys.modules)\n"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


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


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_server_cleanly(tmp_path, stop):
    process, url, _ = start_command(SAMPLES, "--port", "0", "--cache", tmp_path / "cache")
    try:
        assert url.startswith("http://127.0.0.1:")
        host, port = url.removeprefix("http://").strip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/heat/14/8850/5859.png")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(stop)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = process.stderr.read()
    assert process.returncode == 0, rest
    assert rest.strip() == "geoheat: stopped" and "Traceback" not in rest


def test_serve_refuses_a_busy_port_in_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "geoheat", "serve", str(SAMPLES),
                                 "--port", str(port), "--cache", str(tmp_path / "c")],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"geoheat: error: cannot listen on 127.0.0.1:{port}")


def test_listening_beyond_loopback_warns(tmp_path, monkeypatch):
    import geoheat.serve as serve_module

    calls = []

    class Fake:
        url = "http://0.0.0.0:1/"

    monkeypatch.setattr(serve_module, "make_server", lambda *a, **k: calls.append(a) or Fake())
    monkeypatch.setattr(serve_module, "run_server", lambda *a, **k: None)
    result = CliRunner().invoke(cli, ["serve", str(SAMPLES), "--host", "0.0.0.0", "--no-cache",
                                      "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "warning: listening on 0.0.0.0" in result.stderr and calls[0][1] == "0.0.0.0"


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


@pytest.mark.parametrize("filters", ["", "&type=Run&years=2024-2025&cmap=viridis&scaling=linear",
                                     "&cmap=light", "&normalize=local"])
def test_the_page_shows_the_heat_where_the_tracks_are(server, samples_renderer, tmp_path,
                                                     filters):
    """Chromium loads the page (no internet: the OSM basemap fails, the heat shows) and
    the screenshot has the heat's own colours exactly where the tiles put them; the
    filters and colormap in the URL's hash are the ones drawn (the light colormap over
    the light ground)."""
    view, cmap = None, None
    if "viridis" in filters:
        view, cmap = samples_renderer.view(["Run"], [2024, 2025], "linear"), "viridis"
    elif "local" in filters:  # the page's rank choice: the local build's tiles
        view = samples_renderer.view(normalize="local")
    elif filters:
        cmap = "light"
    assert_heat_on_screen(server.url, samples_renderer, ZOOM, filters, view, cmap,
                          tmp_path / "page.png")


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


# The static site.

@contextlib.contextmanager
def static_host(folder: Path, log: list | None = None):
    """Any static web server: the standard library's, serving folder on 127.0.0.1 (log:
    a list that gets each request's path and status)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            if log is not None:
                log.append((self.path, int(code)))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def build_site_at(tmp_path, site, *zoom_options):
    """`geoheat build --site site` of the samples (with an MBTiles beside it); the run."""
    result = CliRunner().invoke(cli, [
        "build", str(SAMPLES), "-o", str(tmp_path / "h.png"), "--basemap", "none",
        "--mbtiles", str(tmp_path / "h.mbtiles"), *zoom_options, "--site", str(site),
        "--no-cache", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert f"-> {site}/index.html" in result.stderr
    return result


# The site's files and refusals need no browser: checked apart from the page, so a
# machine without Chromium still checks them.
def test_build_site_is_a_static_site_of_the_builds_tiles(tmp_path):
    site = tmp_path / "site"
    build_site_at(tmp_path, site, "--zoom", str(ZOOM), "--min-zoom", str(ZOOM), "--max-zoom",
                  str(ZOOM))
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    written = {(int(p.parts[-3]), int(p.parts[-2]), int(p.stem))
               for p in (site / "tiles").glob("*/*/*.png")}
    assert {key for key in written if key[0] == ZOOM} == set(built)
    assert {z for z, _, _ in written} == {ZOOM}  # --min-zoom, --max-zoom
    for (z, x, y), pixels in built.items():
        np.testing.assert_array_equal(decode((site / f"tiles/{z}/{x}/{y}.png").read_bytes()),
                                      pixels)
    for name in ("leaflet.js", "leaflet.css", "images/layers.png"):
        assert (site / "leaflet" / name).read_bytes() == (leaflet_dir() / name).read_bytes()
    meta = json.loads((site / "meta.json").read_text())
    assert not meta["dynamic"] and meta["tiles"] == "tiles/{z}/{x}/{y}.png"
    assert (meta["minzoom"], meta["maxzoom"]) == (ZOOM, ZOOM)
    # Written again over itself; a folder that is no site is refused before any work.
    again = CliRunner().invoke(cli, [
        "build", str(SAMPLES), "--zoom", "12", "-o", str(tmp_path / "h.png"), "--basemap",
        "none", "--site", str(site), "--no-cache", "-j", "1"])
    assert again.exit_code == 0, again.output
    meta = json.loads((site / "meta.json").read_text())
    # By default from the min zoom the build's MBTiles would have (where the heat fits a
    # tile) to street zoom (16), with the legend of each level.
    zooms = sorted(int(p.name) for p in (site / "tiles").iterdir() if p.is_dir())
    assert meta["maxzoom"] == 16 and meta["minzoom"] <= 8
    assert zooms == list(range(meta["minzoom"], 17))
    assert sorted(map(int, meta["legend"])) == zooms
    # The explorer tiles, as geoheat serve gives them: a layer the page offers.
    assert meta["explorer"] == "explorer.json"
    assert isinstance(json.loads((site / "explorer.json").read_text()), list)
    index = json.loads((site / "tiles" / "index.json").read_text())
    assert {(int(z), int(x), y) for z, xs in index.items() for x, ys in xs.items()
            for y in ys} == {(int(p.parts[-3]), int(p.parts[-2]), int(p.stem))
                             for p in (site / "tiles").glob("*/*/*.png")}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    refused = CliRunner().invoke(cli, ["build", str(SAMPLES), "-o", str(tmp_path / "x.png"),
                                       "--basemap", "none", "--site", str(tmp_path / "mine")])
    assert refused.exit_code == 2 and "is not a geoheat site" in refused.stderr
    assert not (tmp_path / "x.png").exists()
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_the_site_in_a_browser_shows_the_heat_and_asks_for_no_missing_tile(tmp_path):
    chromium()  # skips, saying why, without Chromium
    site = tmp_path / "site"
    build_site_at(tmp_path, site, "--zoom", str(ZOOM), "--min-zoom", str(ZOOM), "--max-zoom",
                  str(ZOOM))
    # From a plain static server: the heat where the build put it.
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]))
    requests = []
    with static_host(site, requests) as url:
        assert_heat_on_screen(url, renderer, ZOOM, "", None, None, tmp_path / "site.png")
    # The page asked for tiles, and for none the site lacks (tiles/index.json): no 404
    # in the browser's console for the empty tiles in view.
    assert any(path.startswith(f"/tiles/{ZOOM}/") for path, _ in requests), requests
    assert [r for r in requests if r[1] == 404 and "favicon" not in r[0]] == []
    # Zoomed out over the whole extent, where the view holds tiles without heat: the page
    # asks for none of them, so the console shows no 404.
    build_site_at(tmp_path, site, "--zoom", "12")
    west, south, east, north = json.loads((site / "meta.json").read_text())["bounds"]
    requests = []
    with static_host(site, requests) as url:
        screenshot(f"{url}#map=11/{(south + north) / 2!r}/{(west + east) / 2!r}",
                   tmp_path / "zoomed-out.png", (1200, 900))
    asked = {path for path, _ in requests if path.startswith("/tiles/11/")}
    assert asked, requests
    assert [r for r in requests if r[1] == 404 and "favicon" not in r[0]] == []


def test_serve_command_serves_an_mbtiles_file(built_mbtiles):
    process, url, _ = start_command(built_mbtiles, "--port", "0")
    try:
        host, port = url.removeprefix("http://").strip("/").split(":")
        with contextlib.closing(sqlite3.connect(built_mbtiles)) as db:
            z, x, row, data = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data "
                                         "FROM tiles LIMIT 1").fetchone()
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", f"/heat/{z}/{x}/{2**z - 1 - row}.png")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == data
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert process.returncode == 0


def test_serve_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mbtiles").write_bytes(b"not a database at all" * 100)
    for args, words in (([tmp_path / "empty"], "no file matches"),
                        ([tmp_path / "broken.mbtiles"], "not an MBTiles file"),
                        ([SAMPLES, "--year", "1999"], "nothing to draw"),
                        ([SAMPLES, "--sigma", "99"], "sigma must be 0-50")):
        result = CliRunner().invoke(cli, ["serve", *map(str, args), "--no-cache", "-j", "1"])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("geoheat: error: ") and words in lines[-1], lines
        assert "Traceback" not in result.output


def test_a_client_resetting_its_connection_leaves_no_traceback(server, capfd):
    """Browsers drop keep-alive connections (a reset, with a response unread): the
    server takes it quietly."""
    import socket
    import struct
    import time

    host, port = server.server_address[:2]
    for _ in range(3):
        sock = socket.create_connection((host, port), 5)
        sock.sendall(f"GET /app.js HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        time.sleep(0.2)  # the answer arrives, unread
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset
    time.sleep(0.3)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err
    assert get(server, "/meta.json")[0] == 200  # and goes on serving


def test_run_server_prints_the_url_opens_it_and_stops(samples_renderer, monkeypatch):
    import webbrowser

    opened, lines = [], []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    server = make_server(RenderedTiles(samples_renderer), "127.0.0.1", 0)

    answers = []

    def stop_soon():  # called before serving: ask, then stop, from another thread
        def ask_and_stop():
            answers.append(get(server, "/")[0])
            server.shutdown()

        threading.Thread(target=ask_and_stop).start()

    from geoheat.serve import run_server

    run_server(server, lines.append, open_browser=True, ready=stop_soon)
    assert opened == [server.url] and answers == [200]
    assert lines == [f"geoheat: serving at {server.url} (Ctrl-C stops)", "geoheat: stopped"]


# Damaged tile files: refused at start in one line, or a 500 for the bad tile while the
# rest is served (issue 19).

def noise_png(seed: int, size: int = 64) -> bytes:
    """A PNG that does not deflate much (~size * size * 4 bytes)."""
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, (4, size, size), dtype=np.uint8))


def mbtiles_file(path: Path, metadata: dict, tiles: dict) -> Path:
    """An MBTiles file of tiles {(z, x, y): data} (XYZ rows) with this metadata."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", metadata.items())
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, "
                   "tile_row INTEGER, tile_data BLOB)")
        db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                       [(z, x, 2**z - 1 - y, data) for (z, x, y), data in tiles.items()])
        db.commit()
    return path


GOOD_METADATA = {"name": "heat", "format": "png", "minzoom": "3", "maxzoom": "3",
                 "bounds": "14.4,46.0,14.6,46.1"}
TILE_KEYS = [(3, x, y) for x in range(8) for y in range(8)]


def refusal(path: Path, monkeypatch) -> tuple[int, list[str]]:
    """`geoheat serve PATH`'s exit code and stderr lines, up to serving (not served)."""
    import geoheat.serve as serve_module

    monkeypatch.setattr(serve_module, "run_server", lambda *a, **k: None)
    result = CliRunner().invoke(cli, ["serve", str(path), "--port", "0"])
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr.strip().splitlines()


@pytest.mark.parametrize("change, words", [
    ({"minzoom": "abc"}, "its metadata's minzoom is not a zoom 0-30: 'abc'"),
    ({"maxzoom": "15.5"}, "its metadata's maxzoom is not a zoom 0-30: '15.5'"),
    ({"minzoom": "9"}, "its metadata's minzoom 9 is above its maxzoom 3"),
    ({"bounds": "nan,nan,nan,nan"}, "its metadata's bounds are not west,south,east,north"),
    ({"bounds": "14.4,46.0,14.6"}, "its metadata's bounds are not west,south,east,north"),
    ({"bounds": "14.4,46.0,194.6,46.1"}, "its metadata's bounds are not west,south,east,north"),
])
def test_an_mbtiles_file_with_unusable_metadata_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                        change, words):
    path = mbtiles_file(tmp_path / "h.mbtiles", {**GOOD_METADATA, **change},
                        {TILE_KEYS[0]: noise_png(0)})
    code, lines = refusal(path, monkeypatch)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"geoheat: error: {path}: {words}")


@pytest.mark.parametrize("damage, words", [
    ("DROP TABLE tiles", "no such table: tiles"),
    ("ALTER TABLE tiles RENAME COLUMN tile_data TO data", "no such column: tile_data"),
    ("DROP TABLE metadata", "no such table: metadata"),
    ("UPDATE tiles SET zoom_level = 'x'; DELETE FROM metadata WHERE name LIKE '%zoom'",
     "damaged (a tile's zoom_level is not a zoom 0-30)"),
])
def test_an_mbtiles_file_without_its_tables_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                    damage, words):
    path = mbtiles_file(tmp_path / "h.mbtiles", GOOD_METADATA, {TILE_KEYS[0]: noise_png(0)})
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(damage)
    code, lines = refusal(path, monkeypatch)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"geoheat: error: {path}: ")
    assert words in lines[0]


def test_without_zooms_in_its_metadata_an_mbtiles_file_has_its_tiles_zooms(tmp_path):
    metadata = {k: v for k, v in GOOD_METADATA.items() if "zoom" not in k}
    path = mbtiles_file(tmp_path / "h.mbtiles", metadata,
                        {(2, 1, 1): noise_png(0), (5, 3, 3): noise_png(1)})
    meta = MBTilesFile(path).meta()
    assert (meta["minzoom"], meta["maxzoom"], meta["bounds"]) == (2, 5, [14.4, 46.0, 14.6, 46.1])


def test_damaged_mbtiles_tiles_are_500_and_the_rest_is_served(tmp_path, capfd):
    """Garbage pages in the tiles' part of the file, a tile that is no blob (bytes(5) made
    five zero bytes of it): 500 for those, one line each, the others served."""
    tiles = {key: noise_png(i) for i, key in enumerate(TILE_KEYS)}
    path = mbtiles_file(tmp_path / "h.mbtiles", GOOD_METADATA, tiles)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE tiles SET tile_data = 5 WHERE zoom_level = 3 AND tile_column = 0 "
                   "AND tile_row = 7")  # 3/0/0
        db.commit()
    data = bytearray(path.read_bytes())
    half = len(data) // 2 // 4096 * 4096
    data[half:] = np.random.default_rng(7).integers(0, 256, len(data) - half,
                                                    dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    source = MBTilesFile(path)  # opens: metadata and schema are in the first pages
    with running(source) as server:
        answers = {key: get(server, "/heat/{}/{}/{}.png".format(*key)) for key in TILE_KEYS}
        assert get(server, "/meta.json")[0] == 200  # still serving
    assert answers[3, 0, 0][:3:2] == (500, b"damaged tile\n")
    statuses = {status for status, _, _ in answers.values()}
    assert statuses == {200, 500}
    for key, (status, _, body) in answers.items():
        assert status == 500 and body == b"damaged tile\n" or body == tiles[key], key
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: tile 3/0/0 is no image (an integer, not a blob)" in err
    assert err.count("geoheat: error: ") == sum(s == 500 for s, _, _ in answers.values())


def pmtiles_bytes(tiles: dict | None = None, *, root=None, leaves=b"", metadata=b"{}",
                  **header) -> bytes:
    """A PMTiles v3 file: tiles {(z, x, y): data} in the root directory, or the given
    (gzipped) root and leaf directories; header fields override the usual ones."""
    import gzip

    from pmtiles.tile import (Compression, Entry, TileType, serialize_directory,
                              serialize_header, zxy_to_tileid)

    tiles = tiles or {}
    entries, data = [], b""
    for key in sorted(tiles, key=lambda k: zxy_to_tileid(*k)):
        entries.append(Entry(zxy_to_tileid(*key), len(data), len(tiles[key]), 1))
        data += tiles[key]
    root = serialize_directory(entries) if root is None else root
    metadata = gzip.compress(metadata, mtime=0)
    at = 127
    fields = {
        "version": 3, "root_offset": at, "root_length": len(root),
        "metadata_offset": at + len(root), "metadata_length": len(metadata),
        "leaf_directory_offset": at + len(root) + len(metadata),
        "leaf_directory_length": len(leaves),
        "tile_data_offset": at + len(root) + len(metadata) + len(leaves),
        "tile_data_length": len(data), "addressed_tiles_count": len(tiles),
        "tile_entries_count": len(tiles), "tile_contents_count": len(tiles),
        "clustered": True, "internal_compression": Compression.GZIP,
        "tile_compression": Compression.NONE, "tile_type": TileType.PNG,
        "min_zoom": 0, "max_zoom": 3, "min_lon_e7": 144_000_000, "min_lat_e7": 460_000_000,
        "max_lon_e7": 146_000_000, "max_lat_e7": 461_000_000, "center_zoom": 3,
        "center_lon_e7": 145_000_000, "center_lat_e7": 460_500_000, **header}
    return serialize_header(fields) + root + metadata + leaves + data


@pytest.mark.parametrize("name, data, words", [
    ("v2", b"PM\x02\x00" + bytes(600), "PMTiles version 2; geoheat reads version 3 "
                                       "(convert it: pmtiles convert)"),
    ("v4", b"PMTiles\x04" + bytes(600), "PMTiles version 4; geoheat reads version 3"),
    ("png", noise_png(0), "not a PMTiles file (no PMTiles header)"),
    ("short", b"PMTiles\x03" + bytes(20), "its header lies beyond the end of the file"),
    ("bomb", pmtiles_bytes(root=__import__("gzip").compress(bytes(64 * 2**20))),
     "its root directory inflates beyond 8 MiB (damaged, or a decompression bomb)"),
    ("cut", pmtiles_bytes({(0, 0, 0): noise_png(0)})[:140],
     "its root directory lies beyond the end of the file"),
    ("garbage root", pmtiles_bytes(root=b"\x1f\x8b not gzip"), "its root directory is damaged"),
    ("bounds", pmtiles_bytes(min_lat_e7=-950_000_000), "its header's bounds are not on Earth"),
    ("zooms", pmtiles_bytes(min_zoom=9, max_zoom=3), "its header's zooms are not zooms 0-30"),
])
def test_a_damaged_pmtiles_file_is_refused_in_one_line(tmp_path, monkeypatch, name, data, words):
    path = tmp_path / "h.pmtiles"
    path.write_bytes(data)
    code, lines = refusal(path, monkeypatch)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"geoheat: error: {path}: ")
    assert words in lines[0]


def test_pmtiles_metadata_that_is_no_object_leaves_the_name_to_the_file(tmp_path):
    for metadata in (b"[1, 2]", b"not json", b'{"name": 5}'):
        path = tmp_path / "h.pmtiles"
        path.write_bytes(pmtiles_bytes({(0, 0, 0): noise_png(0)}, metadata=metadata))
        meta = PMTilesFile(path).meta()
        assert meta["name"] == "h" and meta["bounds"] == [14.4, 46.0, 14.6, 46.1]
        json.dumps(meta, allow_nan=False)


def test_a_pmtiles_leaf_directory_bomb_is_a_500_inflated_once(tmp_path, monkeypatch, capfd):
    """Each request inflated the bomb again (6-22 s, 0.8 GB): now a bounded inflate,
    once; its tiles are 500 and the others are served."""
    import gzip

    import geoheat.serve as serve_module
    from pmtiles.tile import Entry, serialize_directory, zxy_to_tileid

    bomb = gzip.compress(bytes(64 * 2**20))
    png = noise_png(1)
    # Tiles of ids 0-20 in a leaf (the bomb); tile 3/7/7 (its id well above) in the root.
    good = zxy_to_tileid(3, 7, 7)
    root = serialize_directory([Entry(0, 0, len(bomb), 0), Entry(good, 0, len(png), 1)])
    path = tmp_path / "h.pmtiles"
    path.write_bytes(pmtiles_bytes(root=root, leaves=bomb) + png)
    inflated = []
    real = serve_module.PMTilesFile._inflate

    def spy(self, data, compressed, limit, what):
        inflated.append(what)
        return real(self, data, compressed, limit, what)

    monkeypatch.setattr(serve_module.PMTilesFile, "_inflate", spy)
    with running(PMTilesFile(path)) as server:
        for _ in range(3):
            assert get(server, "/heat/0/0/0.png")[:3:2] == (500, b"damaged tile\n")
            assert get(server, "/heat/1/1/0.png")[0] == 500  # the same leaf
            assert get(server, "/heat/3/7/7.png")[::2] == (200, png)
    assert sum("directory at" in what for what in inflated) == 1
    err = capfd.readouterr().err
    assert "inflates beyond 8 MiB" in err and "Traceback" not in err


def test_a_pmtiles_file_cut_short_while_served_is_a_500_not_a_crash(tmp_path):
    """It was mapped into memory: reading a tile beyond its new end killed the server
    (SIGBUS). Read with pread, sizes checked: a 500, and serving goes on."""
    big = noise_png(2, size=96)  # ~37 KB: pages beyond the cut
    path = tmp_path / "h.pmtiles"
    path.write_bytes(pmtiles_bytes({(0, 0, 0): big, (1, 0, 0): noise_png(3)}))
    process, url, _ = start_command(path, "--port", "0")
    try:
        host, port = url.removeprefix("http://").strip("/").split(":")

        def ask(target):
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                connection.request("GET", target)
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        assert ask("/heat/0/0/0.png") == (200, big)
        os.truncate(path, path.stat().st_size - len(big) // 2)
        assert ask("/heat/0/0/0.png") == (500, b"damaged tile\n")
        assert ask("/meta.json")[0] == 200
        process.send_signal(signal.SIGINT)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = process.stderr.read()
    assert process.returncode == 0, rest
    assert "cut short since it was opened" in rest and "Traceback" not in rest


def test_a_loopback_address_other_than_127_0_0_1_answers_its_own_name(samples_renderer):
    """--host 127.0.0.2 printed a URL that answered 403 to every request."""
    source = RenderedTiles(samples_renderer)
    server = make_server(source, "127.0.0.2", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        assert server.url.startswith("http://127.0.0.2:")
        assert get(server, "/meta.json")[0] == 200  # Host: 127.0.0.2:PORT
        port = server.server_address[1]
        assert get(server, "/meta.json", {"Host": f"localhost:{port}"})[0] == 200
        assert get(server, "/meta.json", {"Host": f"127.0.0.3:{port}"})[0] == 403
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# Slow and many clients (issue 28).

def test_a_request_trickling_in_is_cut_off_at_its_deadline(server, monkeypatch):
    """A header line every 25 s held a thread for as long as the client went on: the
    timeout was per read. Now the whole head must come within request_seconds."""
    import select
    import socket

    from geoheat.serve import HeatServer

    monkeypatch.setattr(HeatServer, "request_seconds", 1.0, raising=False)
    host, port = server.server_address[:2]
    with contextlib.closing(socket.create_connection((host, port), 5)) as sock:
        sock.sendall(b"GET /meta.json HTTP/1.1\r\n")
        for line in range(100):  # up to 20 s: a header line every 0.2 s
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                break
            try:
                sock.sendall(b"X-Slow-%d: yes\r\n" % line)
            except OSError:
                break
        else:
            raise AssertionError("the server waited for 100 header lines over 20 s")
        try:
            assert sock.recv(4096) == b""  # closed, no answer
        except ConnectionResetError:
            pass
    assert get(server, "/meta.json")[0] == 200


def test_past_max_threads_a_connection_gets_503_and_a_freed_thread_serves(samples_renderer,
                                                                           monkeypatch):
    from geoheat.serve import HeatServer

    monkeypatch.setattr(HeatServer, "max_threads", 2, raising=False)
    with running(RenderedTiles(samples_renderer)) as server:
        assert_two_threads_at_most(server)


def assert_two_threads_at_most(server):
    import socket

    host, port = server.server_address[:2]
    held = []
    for _ in range(2):  # two keep-alive connections: a thread each, waiting for more
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", "/meta.json")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        held.append(connection)
    with contextlib.closing(socket.create_connection((host, port), 5)) as sock:
        sock.sendall(f"GET /meta.json HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"\r\n\r\nbusy\n")
    held.pop().close()  # its thread sees the end, and is given back
    for _ in range(200):
        status = get(server, "/meta.json")[0]
        if status != 503:
            break
        threading.Event().wait(0.05)
    assert status == 200
    for connection in held:
        connection.close()


def test_the_listen_backlog_takes_a_burst_of_connections(samples_renderer):
    """The backlog was 5: of 100 clients connecting at once before the server accepted,
    the rest waited for SYN retries (300 connections took 44 s)."""
    import select
    import socket

    somaxconn = Path("/proc/sys/net/core/somaxconn")
    if not somaxconn.exists() or int(somaxconn.read_text()) < 128:
        pytest.skip("not Linux, or a system that caps listen backlogs below 128")
    server = make_server(RenderedTiles(samples_renderer), "127.0.0.1", 0)  # not accepting
    sockets = []
    try:
        for _ in range(100):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(server.server_address)
            sockets.append(sock)
        pending = set(sockets)
        for _ in range(50):  # up to 5 s
            _, writable, _ = select.select([], list(pending), [], 0.1)
            pending -= set(writable)
            if not pending:
                break
        connected = sum(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                        for s in sockets if s not in pending)
        assert connected == 100
    finally:
        for sock in sockets:
            sock.close()
        server.server_close()


# Start-up (issue 27): no deadlock when a thread holds an import lock as the reading
# pool starts, and Ctrl-C ends a start-up whatever its workers do.

HOLD_AN_IMPORT_LOCK = """
import importlib._bootstrap as bootstrap, sys, threading
import geoheat.reading as reading

# A thread in the middle of importing geoheat.fit (serve's own thread was importing
# scipy, and with it importlib.resources) while the reading pool starts: a worker
# forked now inherits that lock, held by a thread it does not have, and needs it to
# read a FIT file. The thread finishes when the reading is done.
holding, done = threading.Event(), threading.Event()

def hold():
    with bootstrap._ModuleLockManager("geoheat.fit"):
        holding.set()
        done.wait()

threading.Thread(target=hold, daemon=True).start()
holding.wait()
real = reading.read_files

def read_files(*args, **kwargs):
    try:
        return real(*args, **kwargs)
    finally:
        done.set()

reading.read_files = read_files
sys.argv = ["geoheat", "serve", *sys.argv[1:]]
from geoheat.cli import main
main()
"""

STUCK_WORKERS = """
import os, sys, threading
import geoheat.reading as reading

def stuck(source, *args):  # a worker that never ends (forked: it is the workers' too)
    os.write(2, f"worker {os.getpid()} stuck\\n".encode())  # one write: whole lines
    threading.Event().wait()

reading.parse_and_cache = stuck
sys.argv = ["geoheat", "serve", *sys.argv[1:]]
from geoheat.cli import main
main()
"""


@pytest.fixture
def fit_rides(tmp_path):
    """Four FIT activities around Ljubljana, a folder of their own."""
    from .test_fit import activity

    folder = tmp_path / "fit"
    folder.mkdir()
    for i in range(4):
        points = [(14.50 + 0.0004 * k, 46.05 + 0.0003 * i + 0.0001 * k) for k in range(60)]
        (folder / f"r{i}.fit").write_bytes(activity(points).bytes())
    return folder


def start_script(script: str, *args, wait_for: str, count: int = 1):
    """`python -c script ARGS` (killed after 120 s if still running); the process and
    its stderr lines, read until count lines hold wait_for."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", script,
                                *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "".join(lines).count(wait_for) >= count:
            break
    else:  # the end of its output: it ended
        process.wait()
    watchdog.cancel()
    if process.poll() is not None:
        raise AssertionError(f"ended ({process.returncode}) before {wait_for!r}:\n"
                             + "".join(lines))
    return process, lines


def interrupt(process) -> str:
    """Ctrl-C; the rest of its stderr once it ended. Not ended in 60 s: its threads'
    stacks (faulthandler, on SIGABRT) in the failure."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        process.wait()
        raise AssertionError("Ctrl-C did not end it:\n" + process.stderr.read()) from None
    return process.stderr.read()


def test_a_thread_holding_an_import_lock_as_the_pool_starts_does_not_hang_serve(fit_rides):
    """1 start in 15 hung for good beside a build: a worker forked while another
    thread held an import lock waited for it forever, and Ctrl-C could not end it."""
    process, lines = start_script(HOLD_AN_IMPORT_LOCK, fit_rides, "--port", "0", "--no-cache",
                                  "-j", "2", wait_for="serving at")
    try:
        url = lines[-1].split("serving at ")[1].split()[0]
        host, port = url.removeprefix("http://").strip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/meta.json")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["bounds"]
        connection.close()
    finally:
        rest = interrupt(process)
    assert process.returncode == 0 and rest.strip() == "geoheat: stopped", rest


def test_ctrl_c_ends_a_start_up_whose_workers_are_stuck(fit_rides):
    """The pool's shutdown waited for its workers: Ctrl-C while one was stuck (on an
    inherited lock, say) never ended the start-up."""
    process, lines = start_script(STUCK_WORKERS, fit_rides, "--port", "0", "--no-cache",
                                  "-j", "2", wait_for="stuck", count=2)
    workers = [int(pid) for pid in re.findall(r"worker ([0-9]+) stuck", "".join(lines))]
    assert len(workers) == 2
    rest = interrupt(process)
    assert process.returncode == 130 and rest.strip() == "geoheat: interrupted", rest
    for pid in workers:  # and the workers are gone (or zombies, for init to reap)
        for _ in range(100):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                break
            if state in "ZX":
                break
            threading.Event().wait(0.1)
        else:
            raise AssertionError(f"worker {pid} still running")


def test_ctrl_c_as_a_connection_thread_starts_leaves_no_error_line(samples_renderer, capfd,
                                                                    monkeypatch):
    """socketserver closes the connection when Ctrl-C lands while it starts the thread
    for it (1 stop in 30 printed 'OSError: [Errno 9] Bad file descriptor'): the server
    is stopping, nothing to report."""
    import socket

    from geoheat.serve import HeatServer

    real = HeatServer.process_request

    def interrupted(self, request, client_address):
        real(self, request, client_address)  # the thread is running
        raise KeyboardInterrupt  # as if Ctrl-C came now

    monkeypatch.setattr(HeatServer, "process_request", interrupted)
    server = make_server(RenderedTiles(samples_renderer), "127.0.0.1", 0)
    server.timeout = 10
    try:
        with contextlib.closing(socket.create_connection(server.server_address, 5)) as sock:
            sock.sendall(b"GET /meta.json HTTP/1.1\r\n\r\n")
            with pytest.raises(KeyboardInterrupt):
                server.handle_request()
            for thread in threading.enumerate():
                if "process_request_thread" in thread.name:
                    thread.join(10)
    finally:
        server.server_close()
    err = capfd.readouterr().err
    assert "geoheat: error" not in err and "Traceback" not in err, err
