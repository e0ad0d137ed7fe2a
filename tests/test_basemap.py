"""The basemap: a real HTTP tile server on 127.0.0.1, started by the tests; no internet."""

import errno
import io
import json
import os
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.io import MemoryFile

import geoheat
from geoheat.colormaps import lut
from geoheat import basemap, basemaphttp, basemapimage, tiles
from geoheat.cli import cli
from geoheat.errors import ParameterError

SPOT = (14.50123, 46.05012)
ZOOM = 13


def tile_colour(x, y):
    """A light colour unique to each tile, so placement can be checked."""
    return (150 + x % 100, 150 + y % 100, 200)


def png_tile(colour, palette=False):
    profile = {"driver": "PNG", "width": 256, "height": 256, "count": 3, "dtype": "uint8"}
    pixels = np.empty((3, 256, 256), dtype=np.uint8)
    pixels[:] = np.array(colour, dtype=np.uint8)[:, None, None]
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(pixels)
        return mem.read()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width, height):
    """A tiny, well-formed PNG whose header claims width x height pixels (a bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


class TileServer:
    """Serves /MODE/z/x/y.png; records requests, user agents and peak concurrency.

    A request counts as active from its arrival (the client has surely started it)
    until just before the last byte of its answer is sent (the client surely has not
    finished it): an interval inside the client's, so the peak never over-counts,
    whatever order the threads are scheduled in. Counters belong to one reset(), so
    a handler still running from an earlier test cannot disturb a later one.
    """

    def __init__(self, tls=None):
        self.lock = threading.Lock()
        self.reset()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # an ssl.SSLContext: serve https
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "http" if tls is None else "https"
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    raw_answers = {
        "badstatus": b"SPAM/1.0 200 OK\r\n\r\n",
        "longline": b"HTTP/1.0 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
    }

    def reset(self):
        with self.lock:
            self.requests, self.agents, self.conditional = [], Counter(), 0
            self.concurrency = {"active": 0, "peak": 0}
            self.streamed = []  # bytes of each endless body sent before the client hung up

    @property
    def peak(self):
        return self.concurrency["peak"]

    def url(self, mode):
        return f"{self.scheme}://127.0.0.1:{self.port}/{mode}/{{z}}/{{x}}/{{y}}.png"

    def handle(self, request):
        with self.lock:
            self.requests.append(request.path)
            self.agents[request.headers.get("User-Agent")] += 1
            concurrency = self.concurrency
            concurrency["active"] += 1
            concurrency["peak"] = max(concurrency["peak"], concurrency["active"])
        # The answer is composed in memory, so its last byte can be held back until
        # this request no longer counts as active.
        wire, request.wfile = request.wfile, io.BytesIO()
        try:
            self.respond(request, wire)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            answer = request.wfile.getvalue()
            try:
                wire.write(answer[:-1])
            except OSError:
                pass
            with self.lock:
                concurrency["active"] -= 1
            try:
                wire.write(answer[-1:])
            except OSError:
                pass

    def respond(self, request, wire):
        """Answer through request.wfile (buffered); wire is the socket, for streaming."""
        mode, z, x, y = request.path.strip("/").removesuffix(".png").split("/")
        time.sleep(0.03)  # long enough for requests to overlap if the client allowed it
        if mode == "slow":
            time.sleep(1.5)
        if mode in self.raw_answers:  # broken HTTP, byte for byte
            request.wfile.write(self.raw_answers[mode])
            return
        if mode in ("away", "ftp", "file", "same"):
            target = {"away": f"http://localhost:{self.port}/ok/{z}/{x}/{y}.png",
                      "ftp": f"ftp://127.0.0.1/{z}/{x}/{y}.png", "file": "file:///etc/passwd",
                      "same": f"/ok/{z}/{x}/{y}.png"}[mode]
            request.send_response(302)
            request.send_header("Location", target)
            request.end_headers()
            return
        if mode == "trickle":  # a whole answer, one byte every 0.2 s (a minute's worth)
            answer = (b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n"
                      + png_tile(tile_colour(int(x), int(y))))
            for byte in answer[:300]:
                wire.write(bytes([byte]))
                time.sleep(0.2)
            return
        if mode in ("endless", "huge"):  # a body far beyond any tile's, streamed
            request.send_response(200)
            request.send_header("Content-Type", "image/png")
            if mode == "huge":
                request.send_header("Content-Length", str(2**30))
            request.end_headers()
            wire.write(request.wfile.getvalue() + b"\x89PNG\r\n\x1a\n")
            request.wfile = io.BytesIO()
            block, sent = bytes(2**16), 0
            try:
                while sent < 2**30:
                    wire.write(block)
                    sent += len(block)
            finally:
                with self.lock:
                    self.streamed.append(sent)
            return
        if mode in ("404", "500"):
            request.send_error(int(mode))
            return
        if mode == "etag" and request.headers.get("If-None-Match") == '"v1"':
            with self.lock:
                self.conditional += 1
            request.send_response(304)
            request.send_header("Cache-Control", "max-age=0")
            request.end_headers()
            return
        body = b"<html>not a tile</html>" if mode == "garbage" else png_tile(
            tile_colour(int(x), int(y)))
        if mode == "truncated":  # well delivered, but the image itself stops half-way
            body = body[:len(body) // 2]
        if mode == "bomb":
            body = png_claiming(30000, 30000)
        request.send_response(200)
        request.send_header("Content-Type", "image/png")
        request.send_header("Content-Length", str(len(body) * (2 if mode == "short" else 1)))
        if mode == "etag":
            request.send_header("ETag", '"v1"')
            request.send_header("Cache-Control", "max-age=0")
        else:
            request.send_header("Cache-Control", "max-age=3600")
        request.end_headers()
        request.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = TileServer()
    yield srv
    srv.httpd.shutdown()


@pytest.fixture
def tile_server(server):
    server.reset()
    return server


@pytest.fixture
def tracks(tmp_path, write_gpx):
    folder = tmp_path / "tracks"
    ride = [(SPOT[0] + 0.01 * i, SPOT[1] + 0.004 * i) for i in range(8)]
    write_gpx("a.gpx", [SPOT] * 20, ride, folder=folder)
    return folder


def build(tracks, tmp_path, url, **kwargs):
    warnings = []
    kwargs = {"tile_cache": tmp_path / "cache", "zoom": ZOOM, "sigma": 1, **kwargs}
    result = geoheat.build([tracks], tmp_path / "h.png", basemap=url,
                           on_warning=warnings.append, **kwargs)
    return result, warnings


def cached_tiles(folder: Path):
    return sorted(folder.rglob("*.tile"))


def test_map_lies_under_the_heat_tile_by_tile(tmp_path, tracks, tile_server):
    result, warnings = build(tracks, tmp_path, tile_server.url("ok"))
    assert warnings == []
    grid = result.grid
    assert len(tile_server.requests) == len(tiles.grid_tiles(grid)) >= 4
    assert result.basemap.downloaded == len(tile_server.requests)
    with rasterio.open(tmp_path / "h.png") as png, rasterio.open(tmp_path / "h-heat.tif") as tif:
        picture, values = png.read(), tif.read(1)
    for t in tiles.grid_tiles(grid):
        r0, c0 = t.y * 256 - grid.row_off, t.x * 256 - grid.col_off
        block = values[r0:r0 + 256, c0:c0 + 256]
        cold = np.argwhere(block == 0)
        row, col = cold[len(cold) // 2]  # a pixel of this tile without heat
        red, green, blue = tile_colour(t.x, t.y)
        grey = 0.2126 * red + 0.7152 * green + 0.0722 * blue
        expected = round((255 - grey) * 0.6)  # 'hot' style: grey, inverted, dimmed to 0.6
        assert picture[:, r0 + row, c0 + col].tolist() == [expected] * 3, t
    hot = np.unravel_index(values.argmax(), values.shape)
    # One ride, one pass: the middle of 'hot' (orange), screened over the map: at least
    # as bright as the colour itself.
    colour = lut("hot")[int(round(values[hot] * 255))]
    assert (picture[:, hot[0], hot[1]] >= colour).all() and picture[0, hot[0], hot[1]] == 255


def test_the_light_style_keeps_a_light_map_light_and_lays_the_heat_over_it(
        tmp_path, tracks, tile_server):
    # --style light: the map grey and faded towards white (not inverted, not dimmed), the
    # heat laid over it by its alpha, so its lines are dark on the light ground.
    result, warnings = build(tracks, tmp_path, tile_server.url("ok"), style="light")
    assert warnings == []
    grid = result.grid
    with rasterio.open(tmp_path / "h.png") as png, rasterio.open(tmp_path / "h-heat.tif") as tif:
        picture, values = png.read(), tif.read(1)
    for t in tiles.grid_tiles(grid)[:3]:
        r0, c0 = t.y * 256 - grid.row_off, t.x * 256 - grid.col_off
        cold = np.argwhere(values[r0:r0 + 256, c0:c0 + 256] == 0)
        row, col = cold[len(cold) // 2]
        red, green, blue = tile_colour(t.x, t.y)
        grey = 0.2126 * red + 0.7152 * green + 0.0722 * blue
        expected = round(255 - (255 - grey) * 0.55)
        assert picture[:, r0 + row, c0 + col].tolist() == [expected] * 3, t
    line = values >= 0.25  # the tracks' own pixels: opaque ink, the table's colour
    colours = picture[:, line].T
    table = lut("light")[np.rint(values[line] * 255).astype(int)]
    np.testing.assert_array_equal(colours, table)
    assert colours.max(axis=1).mean() < 235  # darker than the light map around


def test_user_agent_names_geoheat_and_at_most_two_connections(tmp_path, tracks, tile_server):
    build(tracks, tmp_path, tile_server.url("ok"), zoom=15)
    assert len(tile_server.requests) >= 6
    assert list(tile_server.agents) == [basemaphttp.USER_AGENT]
    assert basemaphttp.USER_AGENT.startswith(f"geoheat/{geoheat.__version__} ")
    assert 1 <= tile_server.peak <= basemaphttp.MAX_CONNECTIONS


def test_second_run_uses_the_cache(tmp_path, tracks, tile_server):
    first, _ = build(tracks, tmp_path, tile_server.url("ok"))
    picture = (tmp_path / "h.png").read_bytes()
    tile_server.reset()
    second, warnings = build(tracks, tmp_path, tile_server.url("ok"))
    assert tile_server.requests == [] and warnings == []
    assert second.basemap.cached == first.basemap.downloaded
    assert (tmp_path / "h.png").read_bytes() == picture


def test_expired_tiles_are_revalidated_not_downloaded_again(tmp_path, tracks, tile_server):
    build(tracks, tmp_path, tile_server.url("etag"))
    count = len(tile_server.requests)
    tile_server.reset()
    result, warnings = build(tracks, tmp_path, tile_server.url("etag"))
    assert tile_server.conditional == count  # every tile asked with If-None-Match, got 304
    assert warnings == [] and result.basemap.downloaded == count


@pytest.mark.parametrize("mode, reason", [("404", "HTTP 404"), ("500", "HTTP 500"),
                                          ("slow", "timed out"), ("garbage", "not an image")])
def test_failing_server_gives_plain_background_and_one_warning(
        tmp_path, tracks, tile_server, mode, reason):
    result, warnings = build(tracks, tmp_path, tile_server.url(mode), tile_timeout=0.5)
    total = len(tiles.grid_tiles(result.grid))
    assert len(warnings) == 1
    assert warnings[0].startswith(f"basemap: {total} of {total} tiles missing (")
    assert reason in warnings[0]
    assert cached_tiles(tmp_path / "cache") == []  # nothing broken cached
    with rasterio.open(tmp_path / "h.png") as png:
        assert png.read()[:, 0, 0].tolist() == [0, 0, 0]  # the 'hot' style's plain background
    if mode in ("500", "slow"):  # the server is in trouble: no further requests
        assert len(tile_server.requests) <= basemaphttp.MAX_CONNECTIONS


def test_failing_server_through_the_cli_exits_zero(tmp_path, tracks, tile_server):
    result = CliRunner().invoke(cli, ["build", str(tracks), "-o", str(tmp_path / "h.png"),
                                      "--zoom", str(ZOOM), "--basemap", tile_server.url("404"),
                                      "--tile-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "basemap:" in lines[0] and "HTTP 404" in lines[0]
    assert lines[1].startswith("geoheat: 1 file read;")


def test_unreachable_server_stops_at_once(tmp_path, tracks):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, warnings = build(tracks, tmp_path, f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png")
    assert len(warnings) == 1 and "network unreachable" in warnings[0]
    # At once: only the tiles already under way tried to connect (no retry, no wait);
    # every other tile was not asked for.
    missing = result.basemap.missing
    tried = sum(n for reason, n in missing.items() if reason.startswith("network unreachable"))
    assert 1 <= tried <= basemaphttp.MAX_CONNECTIONS
    assert missing[basemaphttp.Stop.reason] == len(tiles.grid_tiles(result.grid)) - tried


def test_basemap_none_makes_no_connection(tmp_path, tracks, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    result = CliRunner().invoke(cli, ["build", str(tracks), "-o", str(tmp_path / "h.png"),
                                      "--basemap", "none", "--zoom", str(ZOOM)])
    assert result.exit_code == 0, result.stderr


def test_too_many_tiles_is_refused_with_the_number(tmp_path, tracks, tile_server):
    with pytest.raises(ParameterError, match=r"needs \d+ tiles .* more than --max-tiles 2"):
        build(tracks, tmp_path, tile_server.url("ok"), max_tiles=2)
    assert tile_server.requests == []
    result = CliRunner().invoke(cli, ["build", str(tracks), "-o", str(tmp_path / "h.png"),
                                      "--zoom", "17", "--basemap", tile_server.url("ok"),
                                      "--max-tiles", "3", "--tile-cache", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "lower --zoom, narrow --bounds, or use --basemap none" in result.stderr
    assert not (tmp_path / "h.png").exists()


def test_damaged_cache_file_is_refetched(tmp_path, tracks, tile_server):
    build(tracks, tmp_path, tile_server.url("ok"))
    victim = cached_tiles(tmp_path / "cache")[0]
    for damage in (lambda: victim.write_bytes(b"\x89PNG\r\n\x1a\n broken"),
                   lambda: victim.with_suffix(".json").write_text("{not json")):
        damage()
        tile_server.reset()
        result, warnings = build(tracks, tmp_path, tile_server.url("ok"))
        assert warnings == [] and len(tile_server.requests) == 1  # that tile, from the server
        basemapimage.decode_tile(victim.read_bytes())


def test_attribution_is_stamped_bottom_right(tmp_path, tracks, tile_server):
    build(tracks, tmp_path, tile_server.url("ok"), attribution="(c) Test Tiles")
    with rasterio.open(tmp_path / "h.png") as png:
        picture = png.read()
    corner = picture[:, -12:, -90:]
    assert (corner == 230).all(axis=0).sum() > 40  # light text pixels
    assert not (picture[:, :-20, :] == 230).all(axis=0).any()  # nowhere else


def test_styles_and_colormaps_change_the_look(tmp_path, tracks, tile_server):
    url = tile_server.url("ok")
    pictures = {}
    for style, cmap in (("hot", None), ("strava", None), ("hot", "viridis")):
        build(tracks, tmp_path, url, style=style, cmap=cmap)
        with rasterio.open(tmp_path / "h.png") as png, rasterio.open(tmp_path / "h-heat.tif") as tif:
            pictures[style, cmap] = png.read()
            values = tif.read(1)
    hot = np.unravel_index(values.argmax(), values.shape)
    colours = {key: tuple(p[:, hot[0], hot[1]]) for key, p in pictures.items()}
    assert len(set(colours.values())) == 3
    assert colours["strava", None][0] > colours["strava", None][2]  # orange: red over blue
    qml = (tmp_path / "h-heat.qml").read_text()
    assert "#fde725" in qml  # viridis' last colour: the style follows --cmap


def test_resolve_provider():
    assert basemap.resolve_provider("none") is None and basemap.resolve_provider(None) is None
    osm = basemap.resolve_provider("osm")
    assert osm.url == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert "OpenStreetMap contributors" in osm.attribution and osm.max_zoom == 19
    named = basemap.resolve_provider("OpenStreetMap.HOT")
    assert "{z}" in named.url and "OpenStreetMap" in named.attribution
    custom = basemap.resolve_provider("http://tiles.example/{z}/{x}/{y}.png")
    assert basemap.tile_url(custom, tiles.Tile(3, 4, 5)) == "http://tiles.example/5/3/4.png"
    with pytest.raises(ParameterError, match="unknown basemap"):
        basemap.resolve_provider("No.Such.Provider")
    with pytest.raises(ParameterError, match="http"):
        basemap.resolve_provider("ftp://x/{z}/{x}/{y}")
    with pytest.raises(ParameterError, match="needs an API key"):
        basemap.resolve_provider("Thunderforest.OpenCycleMap")


def one_warning(warnings, reason):
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("basemap: ") and reason in warnings[0], warnings[0]
    return warnings[0]


@pytest.mark.parametrize("mode, reason", [
    ("short", "bad response (IncompleteRead)"),
    ("badstatus", "bad response (BadStatusLine)"),
    ("longline", "bad response (LineTooLong)"),
    ("truncated", "broken image"),
    ("bomb", "not a map tile (30000x30000 px)"),
    ("huge", "too large"),
    ("away", "redirect to another host refused"),
    ("ftp", "redirect to ftp: refused"),
    ("file", "HTTP 302"),  # urllib itself refuses file: before asking the redirect handler
])
def test_broken_answers_are_missing_tiles_never_a_traceback(
        tmp_path, tracks, tile_server, mode, reason):
    result, warnings = build(tracks, tmp_path, tile_server.url(mode))
    total = len(tiles.grid_tiles(result.grid))
    line = one_warning(warnings, reason)
    assert line.startswith(f"basemap: {total} of {total} tiles missing (")
    assert cached_tiles(tmp_path / "cache") == []  # nothing broken kept for the next run
    assert not any(path.startswith("/ok/") for path in tile_server.requests)  # not followed
    if mode in ("short", "badstatus", "longline"):  # a broken server: asked no further
        assert len(tile_server.requests) <= basemaphttp.MAX_CONNECTIONS


def test_same_host_redirects_are_followed(tmp_path, tracks, tile_server):
    result, warnings = build(tracks, tmp_path, tile_server.url("same"))
    total = len(tiles.grid_tiles(result.grid))
    assert warnings == [] and result.basemap.downloaded == total
    assert sum(path.startswith("/ok/") for path in tile_server.requests) == total
    assert len(cached_tiles(tmp_path / "cache")) == total


def test_an_endless_body_is_read_only_up_to_the_cap(tmp_path, tracks, tile_server):
    started = time.perf_counter()
    result, warnings = build(tracks, tmp_path, tile_server.url("endless"))
    total = len(tiles.grid_tiles(result.grid))
    one_warning(warnings, f"{total} too large")
    while len(tile_server.streamed) < total and time.perf_counter() - started < 60:
        time.sleep(0.05)  # the server's threads notice the hang-up after the client returns
        # (a bound on the wait, not on speed: it ends as soon as they have)
    # Each body cut off after the cap plus what the sockets' buffers hold, far from the
    # 1 GiB on offer (read whole, a 1 GiB body took 4.2 GB of memory).
    assert len(tile_server.streamed) == total
    assert max(tile_server.streamed) < 4 * basemapimage.MAX_TILE_BYTES
    assert cached_tiles(tmp_path / "cache") == []


def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path, tile_server):
    # One byte every 0.2 s never trips the 10 s read timeout; only the deadline ends it.
    provider = basemap.resolve_provider(tile_server.url("trickle"))
    grid = tiles.Grid(ZOOM, 4000 * 256, 3000 * 256, 4 * 256, 256)  # 4 tiles
    rgb, have, report = basemap.fetch_basemap(provider, grid, tmp_path / "cache", timeout=10,
                                              deadline=1.0)
    # Cut off by the deadline: read whole (a minute), the tiles would have been drawn.
    assert report.missing == Counter(deadline=4) and not have.any()
    assert "4 deadline" in basemap.describe_missing(report)
    assert len(tile_server.requests) == basemaphttp.MAX_CONNECTIONS  # the rest never asked


def test_the_deadline_defaults_to_a_minute_for_all_tiles(tmp_path, tile_server, monkeypatch):
    assert basemap.DEFAULT_DEADLINE == 60
    monkeypatch.setattr(basemap, "DEFAULT_DEADLINE", 0.5)  # read at call time: None means it
    provider = basemap.resolve_provider(tile_server.url("trickle"))
    grid = tiles.Grid(ZOOM, 4000 * 256, 3000 * 256, 256, 256)
    *_, report = basemap.fetch_basemap(provider, grid, tmp_path / "cache")
    # The minute's trickle cut off at the (patched) default: read whole, it would be drawn.
    assert report.missing == Counter(deadline=1) and report.downloaded == 0


def fetch(url, cache, tiles_wide=2, **kwargs):
    """fetch_basemap alone, on a row of tiles: no tracks, no outputs."""
    grid = tiles.Grid(ZOOM, 4000 * 256, 3000 * 256, tiles_wide * 256, 256)
    return basemap.fetch_basemap(basemap.resolve_provider(url), grid, cache, **kwargs)


def test_a_damaged_cache_side_file_means_fetch_again(tmp_path, tile_server):
    *_, first = fetch(tile_server.url("ok"), tmp_path)
    assert first.downloaded == 2
    for meta in ["null", "[]", '"x"', '{"expires": "tomorrow"}', '{"expires": null}',
                 '{"expires": 1e999}', '{"expires": %s}' % ("9" * 400), '{"etag": "v"}',
                 '{"expires": 1e12, "etag": 5}', '{"expires": true}', "\xff",
                 '{"expires": 1e12, "etag": "a\\r\\nX-Evil: 1"}']:
        for tile in cached_tiles(tmp_path):
            tile.with_suffix(".json").write_text(meta, encoding="latin-1")
        tile_server.reset()
        _, have, report = fetch(tile_server.url("ok"), tmp_path)
        assert (report.downloaded, report.missing, have.all()) == (2, Counter(), True), meta
        assert len(tile_server.requests) == 2 and tile_server.conditional == 0, meta
        for tile in cached_tiles(tmp_path):  # rewritten whole
            assert json.loads(tile.with_suffix(".json").read_text())["expires"] > time.time()


def fill_disk(monkeypatch):
    """Every cache write meets a full disk: the temporary file is /dev/full (ENOSPC)."""
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(geoheat.cache, "tempfile", SimpleNamespace(mkstemp=mkstemp))


def read_only(monkeypatch):
    """Every cache write meets a read-only file system (root ignores chmod, so say EROFS)."""
    def mkstemp(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(geoheat.cache, "tempfile", SimpleNamespace(mkstemp=mkstemp))


@pytest.mark.parametrize("trouble", ["file in the way", "under a file", "disk full", "read-only"])
def test_an_unwritable_tile_cache_draws_anyway_and_warns_once(
        tmp_path, tracks, tile_server, monkeypatch, trouble):
    cache = tmp_path / "cache"
    if trouble == "file in the way":
        cache.write_text("not a folder")
    elif trouble == "under a file":
        cache.mkdir()
        (cache / "tiles").write_text("not a folder")
    elif trouble == "disk full":
        if not Path("/dev/full").exists():
            pytest.skip("needs /dev/full")
        fill_disk(monkeypatch)
    else:
        read_only(monkeypatch)
    result, warnings = build(tracks, tmp_path, tile_server.url("ok"))
    total = len(tiles.grid_tiles(result.grid))
    line = one_warning(warnings, f"{total} tiles drawn but not cached (tile cache not writable")
    assert "missing" not in line
    assert result.basemap.downloaded == result.basemap.uncached == total
    if cache.is_dir():  # nothing written: no tile, no side file, no temporary file left
        assert [p for p in cache.rglob("*") if p.is_file()] in ([], [cache / "tiles"])
    with rasterio.open(tmp_path / "h.png") as png:  # the map is there: not the black background
        assert png.read()[:, 0, 0].tolist() != [0, 0, 0]


def test_an_unwritable_cache_still_serves_and_revalidates_what_it_has(
        tmp_path, tracks, tile_server, monkeypatch):
    build(tracks, tmp_path, tile_server.url("etag"))  # cached, already expired (max-age=0)
    read_only(monkeypatch)
    tile_server.reset()
    result, warnings = build(tracks, tmp_path, tile_server.url("etag"))
    count = result.basemap.downloaded
    assert tile_server.conditional == count > 0  # 304s: the cached bytes drawn
    one_warning(warnings, f"{count} tiles drawn but not cached")


def decoded_sizes(monkeypatch):
    """The (width, height) of every image whose pixels basemapimage decodes from now on."""
    decoded, pixels = [], basemapimage._tile_pixels

    def recorded(src):
        decoded.append((src.width, src.height))
        return pixels(src)

    monkeypatch.setattr(basemapimage, "_tile_pixels", recorded)
    return decoded


def test_a_bomb_already_in_the_cache_is_refused_and_replaced(tmp_path, tracks, tile_server,
                                                             monkeypatch):
    build(tracks, tmp_path, tile_server.url("ok"))
    victim = cached_tiles(tmp_path / "cache")[0]
    victim.write_bytes(png_claiming(30000, 30000))  # left by an older geoheat
    tile_server.reset()
    decoded = decoded_sizes(monkeypatch)
    result, warnings = build(tracks, tmp_path, tile_server.url("ok"))
    assert set(decoded) == {(256, 256)}  # the bomb refused from its header, never decoded
    assert warnings == [] and len(tile_server.requests) == 1  # that tile, from the server
    basemapimage.decode_tile(victim.read_bytes())


@pytest.mark.parametrize("url, problem", [
    ("http://tiles example/{z}/{x}/{y}.png", "contains a space"),
    ("http://tiles.example/{z}/{x}/{y}.png\n", "contains a space or control character"),
    ("http://tiles.example:99999/{z}/{x}/{y}.png", "not a valid URL (Port out of range"),
    ("http://tiles.example:http/{z}/{x}/{y}.png", "not a valid URL (Port could not be cast"),
    ("http://[::1/{z}/{x}/{y}.png", "not a valid URL (Invalid IPv6 URL)"),
    ("http://tiles.example/{z}/{x}.png", "lacks {y}"),
    ("http://tiles.example/tiles.png", "lacks {z} and {x} and {y}"),
    ("http://tiles.example/{z}/{x}/{y}.png?key={apikey}", "placeholder other than"),
    ("ftp://tiles.example/{z}/{x}/{y}.png", "must start with http:// or https://"),
    ("file:///tiles/{z}/{x}/{y}.png", "must start with http:// or https://"),
    ("tiles.example/{z}/{x}/{y}.png", "must start with http:// or https://"),
    ("http:///{z}/{x}/{y}.png", "names no host"),
    ("http://tiles.example/ü/{z}/{x}/{y}.png", "beyond ASCII"),
])
def test_a_malformed_url_template_is_refused_up_front(tmp_path, url, problem):
    with pytest.raises(ParameterError) as caught:
        basemap.resolve_provider(url)
    message = str(caught.value)
    assert problem in message and "\n" not in message.replace(repr(url), "")
    # Through the CLI, before any input is looked at: even a missing one.
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "no-such-folder"), "-o",
                                      str(tmp_path / "h.png"), "--basemap", url])
    assert result.exit_code == 2
    assert problem in result.stderr and "no-such-folder" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 or "\n" in url


def test_an_unforeseen_error_while_fetching_costs_tiles_not_the_build(
        tmp_path, tracks, tile_server, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(basemaphttp, "expiry", broken)  # runs in the fetching threads
    result, warnings = build(tracks, tmp_path, tile_server.url("ok"))
    one_warning(warnings, "failed (RuntimeError)")
    assert len(tile_server.requests) <= basemaphttp.MAX_CONNECTIONS  # and the run stopped asking


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """The tile server over https, with a self-signed certificate for 127.0.0.1."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = TileServer(tls=context)
    srv.cert = cert
    yield srv
    srv.httpd.shutdown()


def test_https_tiles_and_the_deadline_over_tls(tmp_path, tls_server, monkeypatch):
    # OpenStreetMap is https: the deadline-keeping connections must work over TLS too.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.cert))  # trust the test certificate
    tls_server.reset()
    _, have, report = fetch(tls_server.url("ok"), tmp_path)
    assert report.downloaded == 2 and report.missing == Counter() and have.all()
    _, have, report = fetch(tls_server.url("trickle"), tmp_path, deadline=1.0)
    assert report.missing == Counter(deadline=2) and not have.any()
    monkeypatch.delenv("SSL_CERT_FILE")  # an untrusted certificate: missing tiles, no traceback
    _, have, report = fetch(tls_server.url("ok"), tmp_path / "other")
    assert not have.any() and "CERTIFICATE_VERIFY_FAILED" in str(report.missing)


def test_every_named_provider_resolves_to_a_url_that_can_be_asked():
    import xyzservices.providers as xyz

    for name, provider in xyz.flatten().items():
        key = "KEY-123" if provider.requires_token() else None
        resolved = basemap.resolve_provider(name, key)  # raises ParameterError if not
        basemap.check_url_template(resolved.url)
        assert key is None or key in resolved.url, name  # whatever its token is called
    # Spaces and accents in a provider's own URL are percent-encoded (http.client refused
    # them with InvalidURL, which escaped the build).
    parcels = basemap.resolve_provider("GeoportailFrance.parcels").url
    assert "STYLE=PCI%20vecteur" in parcels and " " not in parcels
    assert "access_token=KEY" in basemap.resolve_provider("MapBox", "KEY").url
