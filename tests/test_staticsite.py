"""`geoheat build --site` (geoheat.staticsite): a static site of the build's tiles that
any static web server serves, the page showing the heat in a real (headless) browser."""

import contextlib
import json
import threading
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from geoheat.cli import cli
from geoheat.options import BuildOptions
from geoheat.page import leaflet_dir

from .serving import (SAMPLES, ZOOM, assert_heat_on_screen, chromium, decode, mbtiles_tiles,
                      renderer_for, screenshot)


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
