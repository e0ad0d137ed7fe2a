"""`geoheat serve`: the heat over an OpenStreetMap basemap in the browser, on a local
HTTP server.

The server answers its own routes only, each matched whole by a pattern (no file path
is ever taken from the URL; anything else is 404):

    /                          the page (geoheat/web/index.html with its settings)
    /app.js, /app.css          the page's own script and style (geoheat/web)
    /meta.json                 what there is to show: bounds, zooms, types, years, ...
    /leaflet/...               Leaflet's files, from the installed xstatic-leaflet package
    /heat/{z}/{x}/{y}.png      a heat tile (?c=colormap&s=scaling&n=normalize&t=types&y=FROM-TO)

Tiles are rendered on request by geoheat.render (the build's own stages), or read from
an MBTiles or PMTiles file (geoheat.renderedtiles, mbtilesfile, pmtilesfile: the tile
sources). Responses carry an ETag (If-None-Match gets 304) and Cache-Control. Errors
are one line on stderr and a 500, never a traceback to the client.
"""

import errno
import io
import ipaddress
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__
from .errors import InputError, OutputError
from .mbtilesfile import MBTilesFile
from .page import LEAFLET_FILES, OWN_FILES, WEB, leaflet_dir, page
from .pmtilesfile import PMTilesFile
from .tilesource import DamagedTile, NotFound

DEFAULT_PORT = 8000
LEGEND_PATH = re.compile(r"/legend/(0|[1-9][0-9]?)\.json")
TILE_PATH = re.compile(r"/heat/(0|[1-9][0-9]?)/(0|[1-9][0-9]{0,6})/(0|[1-9][0-9]{0,6})\.png")
HOST = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::([0-9]+))?")  # name, port
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".png": "image/png", ".json": "application/json", ".html": "text/html; charset=utf-8"}


class Forbidden(Exception):
    """A request naming another host (DNS rebinding: a web page trying to read the local
    server as if it were its own site): 403."""


# What each error is to the client: status, body, and whether stderr gets a line
# (rio-tiler/titiler's table of exceptions to status codes). Any other exception is a
# bug: 500 and a line.
ERRORS: dict[type, tuple[int, bytes, bool]] = {
    NotFound: (404, b"not found\n", False),
    Forbidden: (403, b"forbidden host\n", False),
    DamagedTile: (500, b"damaged tile\n", True),
}
INTERNAL_ERROR = (500, b"internal error\n", True)


def error_answer(error: BaseException) -> tuple[int, bytes, bool]:
    """The status, body and whether to log, of an error raised answering a request."""
    for kind in type(error).__mro__:
        if kind in ERRORS:
            return ERRORS[kind]
    return INTERNAL_ERROR


def open_tile_file(path: Path):
    """An MBTiles or PMTiles file as a tile source."""
    if path.suffix.lower() == ".mbtiles":
        return MBTilesFile(path)
    if path.suffix.lower() == ".pmtiles":
        return PMTilesFile(path)
    raise InputError(f"{path}: not a tile file (.mbtiles or .pmtiles)")


def is_tile_file(path: Path) -> bool:
    return path.suffix.lower() in (".mbtiles", ".pmtiles") and path.is_file()


# The server

class HeatServer(ThreadingHTTPServer):
    """The HTTP server: one thread a connection, at most max_threads of them (503 past
    it), the tile source and the page's files."""

    daemon_threads = True
    block_on_close = False  # Ctrl-C stops at once, not after the last keep-alive client
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: 5 made 300 connections take 44 s
    max_threads = 64  # connections served at once; a browser opens about six
    request_seconds = 10.0  # a request's whole head, however slowly it trickles (a browser: ms)

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
        self.slots = threading.BoundedSemaphore(self.max_threads)
        super().__init__(address, Handler)
        # The names it answers to on loopback: loopback's, and the address it listens on.
        listening = str(self.server_address[0]).lower()
        self.host_names = {"127.0.0.1", "localhost", "[::1]",
                           f"[{listening}]" if ":" in listening else listening}

    def process_request(self, request, client_address) -> None:
        """A thread for the connection; past max_threads, a 503 and close (a slow client
        holds its thread until request_seconds: without a cap, hundreds did)."""
        if not self.slots.acquire(blocking=False):
            refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread started: the slot is free again. (Not on Ctrl-C:
            self.slots.release()  # the thread may be running, and gives it back itself.)
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def host_allowed(self, host: str | None) -> bool:
        """Whether a Host header names this server (always, when not on loopback)."""
        if host is None or not self.loopback_only:
            return True
        port = str(self.server_address[1])
        match = HOST.fullmatch(host.strip().lower())
        if match is None:
            return False
        return (match[2] or port) == port and match[1] in self.host_names

    def handle_error(self, request, client_address) -> None:
        """A request that failed outside the handler's own answer: a client that reset or
        dropped its connection (browsers do, with keep-alive) is nothing to report;
        anything else is one line, never a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        if isinstance(error, OSError) and error.errno == errno.EBADF:
            # Ctrl-C landed while serve_forever was starting this connection's thread:
            # socketserver then closes the connection under the thread. It is stopping.
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

    def setup(self) -> None:
        super().setup()
        # The request's head is read through a deadline (server.request_seconds from its
        # first byte): the socket's timeout is per read, so a header line every 25 s
        # held a thread for as long as the client liked.
        self.rfile.close()  # the socket's own reader: replaced
        self.reader = DeadlineReader(self.connection, self.timeout,
                                     self.server.request_seconds)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        self.reader.deadline = None  # a new request: its clock starts at its first byte
        super().handle_one_request()

    def do_GET(self):  # noqa: N802 - the standard library's name
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        try:
            status, headers, data = self._route()
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as err:  # noqa: BLE001 - by the table; never a traceback to the client
            status, data, log = error_answer(err)
            headers = {"Content-Type": "text/plain"}
            if log:
                print(f"geoheat: error: {self.path[:200]!r}: "
                      f"{err if isinstance(err, DamagedTile) else f'{type(err).__name__}: {err}'}",
                      file=sys.stderr)
        try:
            # The answer too is written within the request's time (at least a second).
            self.connection.settimeout(max(self.reader.remaining(), 1.0))
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
        if path == "/explorer.json" and hasattr(server.source, "explorer_json"):
            return 200, {"Content-Type": TYPES[".json"], "Cache-Control": "no-cache"}, \
                server.source.explorer_json()
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


class DeadlineReader(io.RawIOBase):
    """A socket's bytes, each read waiting at most idle seconds before a request's first
    byte and, from it, until the request's deadline (TimeoutError past it; the handler
    then closes the connection). Set deadline to None when a request starts."""

    def __init__(self, sock, idle: float, limit: float):
        self.sock, self.idle, self.limit = sock, idle, limit
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def remaining(self) -> float:
        """Seconds left for the request (idle, before its first byte)."""
        return self.idle if self.deadline is None else self.deadline - time.monotonic()

    def readinto(self, buffer) -> int:
        left = self.remaining()
        if left <= 0:
            raise TimeoutError("the request took too long")
        self.sock.settimeout(left)
        count = self.sock.recv_into(buffer)
        if self.deadline is None and count:
            self.deadline = time.monotonic() + self.limit
        return count


BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n")


def refuse_busy(sock) -> None:
    """Answer a connection 503 without a thread: one send that fits the socket's buffer,
    then what the client sent is drained (closing on unread bytes would send a reset,
    and the client might lose the answer)."""
    try:
        sock.setblocking(False)
        sock.send(BUSY)
        sock.recv(65536)
    except OSError:
        pass


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
