"""`geoheat serve`: the heat over an OpenStreetMap basemap in the browser, on a local
HTTP server; and `geoheat build --site`: the same page as a static site.

The server answers its own routes only, each matched whole by a pattern (no file path
is ever taken from the URL; anything else is 404):

    /                          the page (geoheat/web/index.html with its settings)
    /app.js, /app.css          the page's own script and style (geoheat/web)
    /meta.json                 what there is to show: bounds, zooms, types, years, ...
    /leaflet/...               Leaflet's files, from the installed xstatic-leaflet package
    /heat/{z}/{x}/{y}.png      a heat tile (?c=colormap&s=scaling&n=normalize&t=types&y=FROM-TO)

Tiles are rendered on request by geoheat.render (the build's own stages), or read from
an MBTiles or PMTiles file. Responses carry an ETag (If-None-Match gets 304) and
Cache-Control. Errors are one line on stderr and a 500, never a traceback to the client.
"""

import hashlib
import importlib
import ipaddress
import json
import re
import shutil
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from . import __version__
from .colormaps import COLORMAP_NAMES
from .errors import InputError, OutputError
from .options import NORMALIZES, SCALINGS, BuildOptions

WEB = Path(__file__).with_name("web")
DEFAULT_PORT = 8000
OSM_ATTRIBUTION = ('&copy; <a href="https://www.openstreetmap.org/copyright">'
                   "OpenStreetMap</a> contributors")
LEGEND_PATH = re.compile(r"/legend/(0|[1-9][0-9]?)\.json")
TILE_PATH = re.compile(r"/heat/(0|[1-9][0-9]?)/(0|[1-9][0-9]{0,6})/(0|[1-9][0-9]{0,6})\.png")
YEARS = re.compile(r"([0-9]{4})-([0-9]{4})")
HOST = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::([0-9]+))?")  # name, port
# Leaflet's files the page uses, by the name they are served under (no other name is).
LEAFLET_FILES = ("leaflet.js", "leaflet.css", "images/layers.png", "images/layers-2x.png",
                 "images/marker-icon.png", "images/marker-icon-2x.png",
                 "images/marker-shadow.png")
OWN_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".png": "image/png", ".json": "application/json", ".html": "text/html; charset=utf-8"}
TILE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
              "webp": "image/webp"}


class NotFound(Exception):
    """A request for something the server does not have: 404."""


class Forbidden(Exception):
    """A request naming another host (DNS rebinding: a web page trying to read the local
    server as if it were its own site): 403."""


def leaflet_dir() -> Path:
    """The folder of Leaflet's files in the installed xstatic-leaflet package."""
    try:
        import xstatic.pkg.leaflet as leaflet
    except ImportError:
        raise InputError("the page needs the xstatic-leaflet package: "
                         "pip install xstatic-leaflet") from None
    return Path(leaflet.BASE_DIR)


def leaflet_version() -> str:
    import xstatic.pkg.leaflet as leaflet

    return leaflet.VERSION


# The tile sources: rendered from tracks, or read from a tile file.

class RenderedTiles:
    """Tiles rendered on request from parsed tracks (a render.Renderer)."""

    dynamic = True

    def __init__(self, renderer, description: str = ""):
        self.renderer = renderer
        self.description = description

    def meta(self) -> dict:
        r = self.renderer
        view = r.default_view
        years = list(view.years) if view.years else None
        return {
            "name": "geoheat", "generator": f"geoheat {__version__}", "dynamic": True,
            "tiles": "heat/{z}/{x}/{y}.png", "format": "png",
            "bounds": r.bounds_lonlat(), "minzoom": 0, "maxzoom": 19,
            "startzoom": r.start_zoom(),
            "types": r.types, "years": r.years,
            "cmaps": list(COLORMAP_NAMES), "scalings": list(SCALINGS),
            "normalizes": list(NORMALIZES),
            "view": {"types": list(view.types) if view.types else None,
                     "years": [years[0], years[-1]] if years else None,
                     "scaling": view.scaling, "normalize": view.normalize,
                     "cmap": r.default_cmap},
            "description": self.description,
            **page_legend(r.options, view.normalize),
        }

    def legend(self, z: int, query: str) -> bytes:
        """The legend of zoom z for a tile URL's query (the view): JSON {"ticks": [[heat,
        count], ...]}; NotFound for a bad query."""
        view, _ = self.parse_query(query)
        return json.dumps({"ticks": self.renderer.legend(z, view)}).encode()

    def warm(self) -> None:
        """Make the levels the page opens at, in the background (see Renderer.warm)."""
        try:
            self.renderer.warm()
        except Exception as err:  # noqa: BLE001 - only a head start: requests make them anyway
            print(f"geoheat: warning: making levels ahead failed: {err}", file=sys.stderr)

    def tile(self, z: int, x: int, y: int, query: str) -> tuple[bytes, str, str]:
        """PNG bytes, content type and ETag of a tile; NotFound for a bad query."""
        view, cmap = self.parse_query(query)
        r = self.renderer
        return r.png_tile(z, x, y, view, cmap), "image/png", r.etag(z, x, y, view, cmap)

    def etag(self, z, x, y, query) -> str:
        view, cmap = self.parse_query(query)
        return self.renderer.etag(z, x, y, view, cmap)

    def parse_query(self, query: str):
        """The view and colormap a tile URL's query asks for: c (colormap), s (scaling),
        n (normalize: global or local), t (types, comma-separated; empty: all), y
        (FROM-TO years; empty: all)."""
        try:
            fields = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                              max_num_fields=5)
        except ValueError:
            raise NotFound("bad query") from None
        if set(fields) - {"c", "s", "n", "t", "y"} or any(len(v) != 1 for v in fields.values()):
            raise NotFound("bad query")
        one = {key: values[0] for key, values in fields.items()}
        cmap = one.get("c")
        if cmap is not None and cmap not in COLORMAP_NAMES:
            raise NotFound("no such colormap")
        scaling = one.get("s")
        if scaling is not None and scaling not in SCALINGS:
            raise NotFound("no such scaling")
        normalize = one.get("n")
        if normalize is not None and normalize not in NORMALIZES:
            raise NotFound("no such normalisation")
        types = None
        if "t" in one:
            types = tuple(t for t in one["t"].split(",") if t)
            if any(t not in self.renderer.types for t in types) or len(set(types)) != len(types):
                raise NotFound("no such type")
            types = tuple(sorted(types))
        years = None
        if "y" in one:
            years = ()
            if one["y"]:
                match = YEARS.fullmatch(one["y"])
                if not match or not 1900 <= int(match[1]) <= int(match[2]) <= 2200:
                    raise NotFound("bad years")
                years = tuple(range(int(match[1]), int(match[2]) + 1))
        return self.renderer.view(types, years, scaling, normalize), cmap


class MBTilesFile:
    """Tiles of an MBTiles file (read-only; TMS rows)."""

    dynamic = False

    def __init__(self, path: Path):
        self.path = path
        try:
            self.db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True,
                                      check_same_thread=False)
            rows = dict(self.db.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.Error as err:
            raise InputError(f"{path}: not an MBTiles file ({err})") from None
        self.lock = threading.Lock()
        self.metadata = rows
        self.format = str(rows.get("format", "png")).lower()
        stat = path.stat()
        self.identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def meta(self) -> dict:
        rows = self.metadata
        bounds = None
        try:
            bounds = [float(v) for v in str(rows["bounds"]).split(",")]
        except (KeyError, ValueError):
            pass
        zooms = [z for (z,) in self.db.execute(
            "SELECT DISTINCT zoom_level FROM tiles ORDER BY zoom_level")]
        return _file_meta(self.path, rows.get("name"), self.format, bounds,
                          int(rows.get("minzoom", zooms[0] if zooms else 0)),
                          int(rows.get("maxzoom", zooms[-1] if zooms else 19)),
                          rows.get("description", ""), rows.get("geoheat_legend"))

    def tile(self, z, x, y, query):
        if query:
            raise NotFound("a tile file has no views")
        with self.lock:
            row = self.db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                "AND tile_row = ?", (z, x, 2**z - 1 - y)).fetchone()
        return _file_tile(row[0] if row else None, self.format, self.etag(z, x, y, query))

    def etag(self, z, x, y, query) -> str:
        return _etag(self.identity, z, x, y)


class PMTilesFile:
    """Tiles of a PMTiles file, through the pmtiles package's reader."""

    dynamic = False

    def __init__(self, path: Path):
        try:
            from pmtiles.reader import MmapSource, Reader
            from pmtiles.tile import TileType
        except ImportError:
            raise InputError("serving PMTiles needs the pmtiles package: "
                             "pip install pmtiles") from None
        self.path = path
        self.file = open(path, "rb")
        try:
            self.reader = Reader(MmapSource(self.file))
            self.header = self.reader.header()
        except Exception as err:  # noqa: BLE001 - whatever a foreign file trips in the reader
            self.file.close()
            raise InputError(f"{path}: not a PMTiles file ({err})") from None
        kinds = {TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}
        self.format = kinds.get(self.header["tile_type"], "png")
        self.lock = threading.Lock()
        stat = path.stat()
        self.identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def meta(self) -> dict:
        h = self.header
        bounds = [h["min_lon_e7"] / 1e7, h["min_lat_e7"] / 1e7,
                  h["max_lon_e7"] / 1e7, h["max_lat_e7"] / 1e7]
        try:
            metadata = self.reader.metadata()
        except Exception:  # noqa: BLE001
            metadata = {}
        return _file_meta(self.path, metadata.get("name"), self.format, bounds,
                          h["min_zoom"], h["max_zoom"], metadata.get("description", ""),
                          metadata.get("geoheat_legend"))

    def tile(self, z, x, y, query):
        if query:
            raise NotFound("a tile file has no views")
        with self.lock:
            data = self.reader.get(z, x, y)
        return _file_tile(data, self.format, self.etag(z, x, y, query))

    def etag(self, z, x, y, query) -> str:
        return _etag(self.identity, z, x, y)


def _file_meta(path, name, fmt, bounds, minzoom, maxzoom, description, legend=None) -> dict:
    meta = {"name": name or path.stem, "generator": f"geoheat {__version__}",
            "dynamic": False, "tiles": "heat/{z}/{x}/{y}.png", "format": fmt,
            "bounds": bounds, "minzoom": minzoom, "maxzoom": maxzoom,
            "description": description or str(path.name)}
    try:  # a geoheat build's tiles carry their legend, level by level (pipeline._write)
        found = json.loads(legend) if legend else None
    except ValueError:
        found = None
    if isinstance(found, dict):
        meta.update(found)
    return meta


def page_legend(options, normalize: str | None = None) -> dict:
    """What the page draws its legend with: each colormap's colours (17 stops, heat 0 to
    1), the unit, whether heat is ranked nearby (--normalize local: fewer/more)."""
    from .colormaps import css_stops

    return {"ramps": {name: css_stops(name) for name in COLORMAP_NAMES},
            "unit": "passes" if options.mode == "lines" else "track points",
            "local": (normalize or options.normalize) == "local"}


def _file_tile(data, fmt, etag):
    from .render import EMPTY_PNG

    if not data:
        return EMPTY_PNG, "image/png", etag
    return bytes(data), TILE_TYPES.get(fmt, "application/octet-stream"), etag


def _etag(identity: str, z: int, x: int, y: int) -> str:
    return '"' + hashlib.sha256(f"{identity}/{z}/{x}/{y}".encode()).hexdigest()[:24] + '"'


def open_tile_file(path: Path):
    """An MBTiles or PMTiles file as a tile source."""
    if path.suffix.lower() == ".mbtiles":
        return MBTilesFile(path)
    if path.suffix.lower() == ".pmtiles":
        return PMTilesFile(path)
    raise InputError(f"{path}: not a tile file (.mbtiles or .pmtiles)")


def is_tile_file(path: Path) -> bool:
    return path.suffix.lower() in (".mbtiles", ".pmtiles") and path.is_file()


# The page

def page(meta: dict) -> bytes:
    """index.html with the settings in it (so the map starts without another request)."""
    text = (WEB / "index.html").read_text(encoding="utf-8")
    data = json.dumps(meta).replace("<", "\\u003c").replace(">", "\\u003e")
    return text.replace("{{META}}", data).replace("{{LEAFLET}}", leaflet_version()).encode()


# The server

class HeatServer(ThreadingHTTPServer):
    """The HTTP server: one thread a request, the tile source and the page's files."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, source, quiet: bool = True):
        self.source = source
        self.quiet = quiet
        self.meta = source.meta()
        self.index = page(self.meta)
        self.meta_json = json.dumps(self.meta, indent=1).encode()
        folder = leaflet_dir()
        self.files = {f"/leaflet/{name}": folder / name for name in LEAFLET_FILES
                      if (folder / name).is_file()}
        self.files.update({f"/{name}": WEB / name for name in OWN_FILES})
        if ":" in str(address[0]):
            self.address_family = socket.AF_INET6
        # On loopback only the names of loopback are answered: a page elsewhere whose
        # name was made to point at 127.0.0.1 must not read the tracks.
        self.loopback_only = is_loopback(str(address[0]))
        super().__init__(address, Handler)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a Host header names this server (always, when not on loopback)."""
        if host is None or not self.loopback_only:
            return True
        port = str(self.server_address[1])
        match = HOST.fullmatch(host.strip().lower())
        if match is None:
            return False
        return (match[2] or port) == port and match[1] in ("127.0.0.1", "localhost", "[::1]")

    def handle_error(self, request, client_address) -> None:
        """A request that failed outside the handler's own answer: a client that reset or
        dropped its connection (browsers do, with keep-alive) is nothing to report;
        anything else is one line, never a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(f"geoheat: error: a request from {client_address[0]}: "
              f"{type(error).__name__}: {error}", file=sys.stderr)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: HeatServer
    server_version = f"geoheat/{__version__}"
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK hold the body back ~40 ms (measured: p50 44 -> 2 ms).
    disable_nagle_algorithm = True
    # An idle keep-alive connection gives its thread back after this many seconds.
    timeout = 60

    def do_GET(self):  # noqa: N802 - the standard library's name
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        try:
            status, headers, data = self._route()
        except NotFound:
            status, headers, data = 404, {"Content-Type": "text/plain"}, b"not found\n"
        except Forbidden:
            status, headers, data = 403, {"Content-Type": "text/plain"}, b"forbidden host\n"
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as err:  # noqa: BLE001 - a bug: one line, never a traceback to the client
            print(f"geoheat: error: {self.path[:200]!r}: {type(err).__name__}: {err}",
                  file=sys.stderr)
            status, headers, data = 500, {"Content-Type": "text/plain"}, b"internal error\n"
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if body and status != 304:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self):
        server = self.server
        if not server.host_allowed(self.headers.get("Host")):
            raise Forbidden(self.headers.get("Host"))
        parts = urlsplit(self.path)
        path, query = parts.path, parts.query
        if path == "/" or path == "/index.html":
            if query:
                raise NotFound(path)
            return 200, {"Content-Type": TYPES[".html"], "Cache-Control": "no-cache"}, \
                server.index
        if path == "/meta.json":
            return 200, {"Content-Type": TYPES[".json"], "Cache-Control": "no-cache"}, \
                server.meta_json
        legend = LEGEND_PATH.fullmatch(path)
        if legend is not None and hasattr(server.source, "legend"):
            return 200, {"Content-Type": TYPES[".json"], "Cache-Control": "max-age=60"}, \
                server.source.legend(int(legend[1]), query)
        if path in server.files:
            file = server.files[path]
            return 200, {"Content-Type": TYPES[file.suffix], "Cache-Control": "max-age=3600"}, \
                file.read_bytes()
        match = TILE_PATH.fullmatch(path)
        if match is None:
            raise NotFound(path)
        from .render import valid_tile

        z, x, y = (int(v) for v in match.groups())
        if not valid_tile(z, x, y):
            raise NotFound(path)
        source = server.source
        etag = source.etag(z, x, y, query)  # checks the query (NotFound) before any work
        cache = {"ETag": etag, "Cache-Control": "max-age=60"}
        if etag in [t.strip() for t in self.headers.get("If-None-Match", "").split(",")]:
            return 304, cache, b""
        data, kind, etag = source.tile(z, x, y, query)
        return 200, {"Content-Type": kind, **cache}, data

    def log_message(self, format, *args):  # noqa: A002 - the standard library's signature
        if not self.server.quiet:
            sys.stderr.write(f"geoheat: {self.address_string()} {format % args}\n")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(source, host: str = "127.0.0.1", port: int | None = None,
                quiet: bool = True) -> HeatServer:
    """A server for a tile source on host:port (None: 8000 if free, else any free port)."""
    if port is not None:
        try:
            return HeatServer((host, port), source, quiet)
        except OSError as err:
            raise OutputError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    try:
        return HeatServer((host, DEFAULT_PORT), source, quiet)
    except OSError:
        pass
    try:
        return HeatServer((host, 0), source, quiet)
    except OSError as err:
        raise OutputError(f"cannot listen on {host}: {err.strerror or err}") from None


def load_renderer(options: BuildOptions, on_warning: Callable | None = None, progress=None):
    """Read (through the parse cache) what the options name, for rendering tiles."""
    from .reading import read_files
    from .render import Renderer
    from .sources import find_sources

    # The blur's scipy takes ~0.25 s to import: meanwhile, not before the first tile.
    threading.Thread(target=importlib.import_module, args=("scipy.ndimage",), daemon=True,
                     name="geoheat-import").start()
    sources = find_sources(options.inputs, options.pattern, on_warning=on_warning)
    parsed = read_files(sources, options.parse_cache, options.jobs, progress,
                        options.max_file_size)
    renderer = Renderer(options, parsed, on_warning=on_warning)
    if renderer.selection(renderer.default_view).area is None:
        raise InputError("nothing to draw: no activity with positions matches")
    return renderer


def run_server(server: HeatServer, echo: Callable[[str], None], open_browser: bool = False,
               ready: Callable | None = None) -> None:
    """Serve until Ctrl-C, then stop cleanly (one line)."""
    warm = getattr(server.source, "warm", None)
    if warm is not None:  # the levels the page opens at, made while the browser starts
        threading.Thread(target=warm, daemon=True, name="geoheat-warm").start()
    echo(f"geoheat: serving at {server.url} (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    if ready is not None:
        ready()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) stops it as cleanly as Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    echo("geoheat: stopped")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# The static site

def build_site(folder: Path, options: BuildOptions, result) -> int:
    """The static site of a build (build --site): the heat tiles the build made (its
    result.tiles, from pipeline.run(keep_tiles=True)), as its MBTiles hold them.
    Returns the number of tiles written."""
    return write_site(folder, result.tiles)


def check_site_folder(folder: Path) -> None:
    """Refuse, before any work, a site folder that would not be written."""
    folder = Path(folder)
    if folder.exists() and not _is_site(folder):
        raise OutputError(f"{folder}: exists and is not a geoheat site; name a new folder")
    if not folder.resolve().parent.is_dir():
        raise OutputError(f"{folder}: its folder {folder.resolve().parent} does not exist")


def site_meta(tileset) -> dict:
    """The page's settings for a site of a build's tiles (what serving its MBTiles gives)."""
    rows = tileset.metadata
    meta = _file_meta(Path(rows.get("name", "geoheat")), rows.get("name"), "png",
                      [float(v) for v in rows["bounds"].split(",")], tileset.min_zoom,
                      tileset.max_zoom, rows.get("description", ""), rows.get("geoheat_legend"))
    meta.update(tiles="tiles/{z}/{x}/{y}.png", index="tiles/index.json")
    return meta


def write_site(folder: Path, tileset, progress=None) -> int:
    """A static site in folder: index.html, the page's files, Leaflet's (copied from the
    installed package) and a build's heat tiles (a pipeline.TileSet) as an XYZ folder
    tiles/z/x/y.png, with tiles/index.json listing them (the page asks for no tile the
    site lacks: no 404 in the browser's console).

    Written beside the folder and renamed into place, replacing an earlier geoheat site
    there; a folder that is not one is refused. Returns the number of tiles written.
    """
    folder = Path(folder)
    check_site_folder(folder)
    parent = folder.resolve().parent
    temp = parent / f".{folder.name}.geoheat-site-tmp"
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        meta = site_meta(tileset)
        (temp / "index.html").write_bytes(page(meta))
        (temp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for name in OWN_FILES:
            shutil.copyfile(WEB / name, temp / name)
        leaflet = leaflet_dir()
        for name in LEAFLET_FILES:
            if (leaflet / name).is_file():
                (temp / "leaflet" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(leaflet / name, temp / "leaflet" / name)
        index: dict = {}
        (temp / "tiles").mkdir()
        items = sorted(tileset.pngs.items())
        for tile, data in (progress(items, "Site tiles", len(items)) if progress else items):
            path = temp / "tiles" / str(tile.z) / str(tile.x) / f"{tile.y}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            index.setdefault(str(tile.z), {}).setdefault(str(tile.x), []).append(tile.y)
        (temp / "tiles" / "index.json").write_text(json.dumps(index, separators=(",", ":")),
                                                  encoding="utf-8")
        if folder.exists():
            old = parent / f".{folder.name}.geoheat-site-old"
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            temp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temp.rename(folder)
    except OSError as err:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(f"{folder}: cannot write the site: {err.strerror or err}") from None
    return len(items)


def _is_site(folder: Path) -> bool:
    """An empty folder, or one an earlier write_site made (its meta.json says so)."""
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and str(meta.get("generator", "")).startswith("geoheat")
