"""`geoheat serve`: tiles rendered on request equal the build's (its MBTiles, its
--site), the server's routes over real HTTP on 127.0.0.1, the page in a real (headless)
browser. Tile files served as they are: test_mbtilesfile, test_pmtilesfile; the renderer
itself: test_render, test_viewselection, test_metatiles, test_bytecache."""

import contextlib
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import geoheat
from geoheat.cli import cli
from geoheat.options import BuildOptions
from geoheat.page import leaflet_dir
from geoheat.render import EMPTY_PNG
from geoheat.renderedtiles import RenderedTiles
from geoheat.serve import make_server

from .serving import (SAMPLES, ZOOM, ask, assert_heat_on_screen, decode, get, renderer_for,
                      running, start_command, stopped)
from .serving import samples_renderer  # noqa: F401 - a fixture


@pytest.fixture(scope="module")
def server(samples_renderer):
    with running(RenderedTiles(samples_renderer)) as server:
        yield server


# Rendering: a served tile is the build's tile.

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
    import geoheat.metatiles

    if sample_tiles is not None:  # and served tile by tile, the sample counted alone
        monkeypatch.setattr(geoheat.level, "SAMPLE_TILES", sample_tiles)
        monkeypatch.setattr(geoheat.metatiles, "WHOLE_TILES", 0)
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


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_server_cleanly(tmp_path, stop):
    process, url, _ = start_command(SAMPLES, "--port", "0", "--cache", tmp_path / "cache")
    try:
        assert url.startswith("http://127.0.0.1:")
        assert ask(url, "/heat/14/8850/5859.png")[0] == 200
    finally:
        rest = stopped(process, stop)
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