"""The basemap's tiles over HTTP, politely (the OpenStreetMap tile usage policy): a
User-Agent naming geoheat, at most two connections at once, no retries within a run (a
connection failure, a timeout or a 429/5xx answer stops the remaining downloads).

Nothing a server or the network does may fail or hold a build: every read is bounded by
the read timeout and the basemap's deadline, a tile's body is read only up to a cap, and
redirects stay on the tile server's host. A tile that cannot be had is a reason.
"""

import functools
import http.client
import io
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import NamedTuple

from . import __version__
from .basemapcache import expiry, header_value
from .basemapimage import MAX_TILE_BYTES, tile_problem
from .tiles import Tile

USER_AGENT = f"geoheat/{__version__} (local GPS track heatmap; python-urllib)"
MAX_CONNECTIONS = 2


class Stop(threading.Event):
    """Set by the first failure that means the remaining tiles should not be asked for."""

    reason = "not asked for after an earlier failure"


class _Refused(Exception):
    """An answer not taken: a redirect off the tile server, or a body over the cap."""


class _DeadlineExceeded(TimeoutError):
    """A read cut off by the basemap's deadline rather than by the per-read timeout."""


class _DeadlineReader(io.RawIOBase):
    """A response's socket, each read given at most the read timeout and never past the
    deadline: the socket timeout alone bounds one read, so a server trickling a byte
    at a time could otherwise hold a tile (and the build) for ever."""

    def __init__(self, sock, read_timeout: float, deadline: float):
        super().__init__()
        self.sock, self.read_timeout, self.deadline = sock, read_timeout, deadline
        self.raw = sock.makefile("rb", buffering=0)  # keeps the socket open, as http.client's does

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded("basemap deadline passed")
        self.sock.settimeout(min(self.read_timeout, remaining))
        try:
            return self.raw.readinto(buffer)
        except TimeoutError:
            if remaining < self.read_timeout:
                raise _DeadlineExceeded("basemap deadline passed") from None
            raise

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock, *args, read_timeout: float, deadline: float, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # nothing read from it yet
        self.fp = io.BufferedReader(_DeadlineReader(sock, read_timeout, deadline))


class _DeadlineHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, read_timeout: float, deadline: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_class = functools.partial(
            _DeadlineResponse, read_timeout=read_timeout, deadline=deadline)


class _DeadlineHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, read_timeout: float, deadline: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_class = functools.partial(
            _DeadlineResponse, read_timeout=read_timeout, deadline=deadline)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, **limits):
        super().__init__()
        self.limits = limits

    def http_open(self, req):
        return self.do_open(functools.partial(_DeadlineHTTPConnection, **self.limits), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, **limits):
        super().__init__()
        self.limits = limits

    def https_open(self, req):
        return self.do_open(functools.partial(_DeadlineHTTPSConnection, **self.limits), req,
                            context=self._context)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to http(s) on the same host: the policy (User-Agent,
    connections, the tile count) is promised to the server the user named, and a
    tile URL has no business pointing at ftp:, file: or another machine."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new.scheme.lower() not in ("http", "https"):
            fp.close()
            raise _Refused(f"redirect to {new.scheme or 'a relative'}: refused")
        if new.hostname != old.hostname:
            fp.close()
            raise _Refused("redirect to another host refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def opener(read_timeout: float, deadline: float) -> urllib.request.OpenerDirector:
    limits = {"read_timeout": read_timeout, "deadline": deadline}
    return urllib.request.build_opener(
        _HTTPHandler(**limits), _HTTPSHandler(**limits), _SameHostRedirects())


def _read_body(response) -> bytes:
    """A response's body, read only up to MAX_TILE_BYTES (a tile is ~20 KB; a huge body
    is refused, not held in memory); IncompleteRead if it is shorter than announced."""
    announced = response.headers.get("Content-Length", "").strip()
    if announced.isdigit() and int(announced) > MAX_TILE_BYTES:
        raise _Refused("too large")
    chunks, size = [], 0
    while size <= MAX_TILE_BYTES:
        chunk = response.read(min(2**16, MAX_TILE_BYTES + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_TILE_BYTES:
        raise _Refused("too large")
    data = b"".join(chunks)
    if response.length:  # http.client's count of announced bytes not received
        raise http.client.IncompleteRead(data, response.length)
    return data


class Fetch(NamedTuple):
    tile: Tile
    data: bytes | None  # decoded later; None when missing
    source: str  # 'cached', 'downloaded', 'stale' or a reason it is missing
    store: tuple[bytes | None, dict] | None = None  # to cache once decoded (bytes None: 304)


def fetch(opener, url, tile, cached, timeout, deadline, stop: threading.Event) -> Fetch:
    """Fetch one tile unless an earlier failure stopped the run or the deadline passed.

    cached: the usable (bytes, metadata) already in the cache, or None; it is
    revalidated, and stands in for the tile if the server fails. Never raises: a
    tile that cannot be had is a reason.
    """
    try:
        return _fetch_tile(opener, url, tile, cached, timeout, deadline, stop)
    except Exception as err:  # noqa: BLE001 - a bug here must cost a tile, not the build
        stop.set()
        return Fetch(tile, cached[0] if cached else None,
                      "stale" if cached else f"failed ({type(err).__name__})")


def _fetch_tile(opener, url, tile, cached, timeout, deadline, stop) -> Fetch:
    def without(reason: str) -> Fetch:
        return Fetch(tile, cached[0] if cached else None, "stale" if cached else reason)

    if time.monotonic() >= deadline:
        return without("deadline")
    if stop.is_set():
        return without("not asked for after an earlier failure")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if cached:
        if cached[1].get("etag"):
            request.add_header("If-None-Match", cached[1]["etag"])
        if cached[1].get("last_modified"):
            request.add_header("If-Modified-Since", cached[1]["last_modified"])
    now = time.time()
    connect_timeout = max(min(timeout, deadline - time.monotonic()), 0.001)
    try:
        with opener.open(request, timeout=connect_timeout) as response:
            data, headers = _read_body(response), response.headers
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 304 and cached:
            meta = {**cached[1], "expires": expiry(err.headers, now) or now}
            return Fetch(tile, cached[0], "downloaded", (None, meta))
        reason = f"HTTP {err.code}"
        if err.code == 429 or err.code >= 500:  # the server asks us to back off: stop here
            stop.reason = reason
            stop.set()
        return without(reason)
    except _Refused as err:  # this tile's answer; the next one may be fine
        return without(str(err))
    except Exception as err:  # noqa: BLE001 - whatever the network does, the map is drawn
        cut_short = connect_timeout < timeout and _network_reason(err) == "timed out"
        if isinstance(err, _DeadlineExceeded) or cut_short or time.monotonic() >= deadline:
            return without("deadline")
        reason = _network_reason(err)
        stop.reason = reason
        stop.set()  # offline, unreachable or broken: the other tiles would fail the same way
        return without(reason)
    problem = tile_problem(data)  # cheap checks here; fully decoded, in one thread, later
    if problem:
        return without(problem)
    expires = expiry(headers, now)
    meta = None if expires is None else {
        "expires": expires, "etag": header_value(headers.get("ETag")),
        "last_modified": header_value(headers.get("Last-Modified"))}
    return Fetch(tile, data, "downloaded", None if meta is None else (data, meta))


def _network_reason(err: Exception) -> str:
    reason = getattr(err, "reason", err) if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, http.client.HTTPException):  # IncompleteRead, BadStatusLine, ...
        return f"bad response ({type(reason).__name__})"
    if isinstance(reason, OSError | str):
        return f"network unreachable ({reason})"
    return f"failed ({type(reason).__name__})"

