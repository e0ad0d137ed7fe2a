"""Basemap tiles under the heat, fetched politely, cached on disk, safe offline.

Follows the OpenStreetMap tile usage policy: a User-Agent naming geoheat, at most
two connections at once, a disk cache reused across runs that honours the
server's expiry headers (seven days where it sends none), a refusal above a tile
count, and no retries within a run: a connection failure, a timeout or a 429/5xx
answer stops the remaining downloads, and the map is drawn with what was had.

Nothing a server, the network or the cache folder does may fail or hold a build:
the whole basemap has one deadline, a tile's body is read only up to a cap, an
image is checked (complete, and of a tile's size) before it is decoded or cached,
redirects stay on the tile server's host, and a cache that cannot be written is
skipped with one warning. What cannot be had is a plain background.
"""

import email.utils
import functools
import hashlib
import http.client
import io
import json
import math
import re
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from . import __version__, tiles
from .options import DEFAULT_DEADLINE, DEFAULT_MAX_TILES, DEFAULT_TIMEOUT
from .cache import default_cache_dir, read_regular, write_atomic
from .errors import ParameterError
from .tiles import Grid, Tile

USER_AGENT = f"geoheat/{__version__} (local GPS track heatmap; python-urllib)"
MAX_CONNECTIONS = 2
DEFAULT_FRESHNESS = 7 * 24 * 3600  # the OSM policy's minimum when a server sends no expiry
OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
MAX_TILE_BYTES = 4 * 2**20  # a map tile is ~20 KB: a larger answer is not one, nor read whole
MAX_META_BYTES = 8192  # a cached tile's side file: an expiry and two validators
MAX_TILE_SIDE = 1024  # px: tiles are 256 or 512 square; a larger image is a decompression bomb


class Provider(NamedTuple):
    """A tile source: a URL template with {z}, {x}, {y}, its attribution and max zoom."""

    name: str
    url: str
    attribution: str
    max_zoom: int = tiles.MAX_ZOOM


class BasemapReport(NamedTuple):
    """How the basemap's tiles were had."""

    tiles: int
    cached: int  # fresh in the cache: no request
    downloaded: int  # fetched, or revalidated (304)
    stale: int  # failed to refresh; the cached copy was used
    missing: Counter  # reason -> tiles drawn as plain background
    uncached: int = 0  # drawn, but not kept: the cache could not be written
    cache_error: str | None = None  # why the cache could not be written


def resolve_provider(spec: str | None, api_key: str | None = None) -> Provider | None:
    """The Provider for --basemap: 'osm', 'none', an xyzservices name or a URL template."""
    if spec is None or spec.lower() == "none":
        return None
    if spec.lower() == "osm":
        return Provider("OpenStreetMap", OSM_URL, "\u00a9 OpenStreetMap contributors", 19)
    if "://" in spec or "{" in spec:  # a URL template, not a provider name
        check_url_template(spec)
        return Provider(spec, spec, "")
    try:
        import xyzservices.providers as xyz

        provider = xyz.query_name(spec)
    except ValueError:
        raise ParameterError(
            f"unknown basemap {spec!r}: use osm, none, an xyzservices name such as "
            "OpenStreetMap.HOT, or a URL template with {z}/{x}/{y}") from None
    if api_key:  # into whichever attribute holds the token (apikey, accessToken, key...)
        keys = [key for key, value in provider.items()
                if isinstance(value, str) and "<insert your" in value] or ["apikey"]
        provider = provider(**dict.fromkeys(keys, api_key))
    elif provider.requires_token():
        raise ParameterError(f"basemap {provider.name} needs an API key: give it with --api-key")
    try:
        url = provider.build_url(scale_factor="")
    except ValueError as err:
        raise ParameterError(f"basemap {provider.name}: {err}") from None
    # Some providers' URLs hold spaces and accents (GeoportailFrance's styles), which
    # http.client refuses: percent-encode them, as a browser does.
    url = urllib.parse.quote(url, safe="".join(map(chr, range(0x21, 0x7f))))
    check_url_template(url)
    return Provider(provider.name, url, provider.get("attribution", ""),
                    int(provider.get("max_zoom", tiles.MAX_ZOOM)))


def check_url_template(url: str) -> None:
    """Refuse a URL template that could never fetch a tile, before any work is done
    (else it fails only after every file has been read): ParameterError, one line."""

    def refuse(problem):
        raise ParameterError(f"basemap URL {url!r} {problem}")

    if re.search(r"[\s\x00-\x1f\x7f]", url):
        refuse("contains a space or control character (write a space as %20)")
    missing = [key for key in ("{z}", "{x}", "{y}") if key not in url]
    if missing:
        refuse(f"lacks {' and '.join(missing)}: a tile URL needs {{z}}, {{x}} and {{y}}")
    sample = tile_url(Provider(url, url, ""), Tile(0, 0, 0))
    leftover = re.search(r"[{}]", sample)
    if leftover:
        refuse("has a placeholder other than {z} {x} {y} {s} {r}, or a stray brace")
    if not sample.isascii():
        refuse("has characters beyond ASCII (percent-encode them)")
    try:
        parts = urllib.parse.urlsplit(sample)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number 0-65535
    except ValueError as err:
        refuse(f"is not a valid URL ({err})")
    if parts.scheme.lower() not in ("http", "https"):
        refuse("must start with http:// or https://")
    if not parts.hostname:
        refuse("names no host")


def tile_url(provider: Provider, tile: Tile) -> str:
    """The URL of one tile."""
    return (provider.url.replace("{z}", str(tile.z)).replace("{x}", str(tile.x))
            .replace("{y}", str(tile.y)).replace("{s}", "a").replace("{r}", ""))


def cache_path(cache_dir: Path, provider: Provider, tile: Tile) -> Path:
    """Where a tile is cached: one folder per URL template, then z/x/y."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", provider.name)[:40].strip("-")
    key = hashlib.sha256(provider.url.encode()).hexdigest()[:10]
    return cache_dir / "tiles" / f"{slug}-{key}" / str(tile.z) / str(tile.x) / f"{tile.y}.tile"


def expiry(headers, now: float) -> float | None:
    """When a response goes stale, from Cache-Control or Expires; None: do not store."""
    control = (headers.get("Cache-Control") or "").lower()
    if "no-store" in control:
        return None
    if "no-cache" in control:
        return now
    match = re.search(r"max-age=(\d+)", control)
    if match:  # RFC 9111 caps delta-seconds at 2^31; a longer number must not overflow a float
        return now + min(int(match.group(1)[:12]), 2**31)
    if headers.get("Expires"):
        try:
            return email.utils.parsedate_to_datetime(headers["Expires"]).timestamp()
        except (TypeError, ValueError, OverflowError, IndexError):
            return now  # an unreadable date means already expired (RFC 9111)
    return now + DEFAULT_FRESHNESS


def read_cache(path: Path) -> tuple[bytes, dict] | None:
    """A cached tile's bytes and metadata, or None (absent, unreadable or damaged)."""
    try:
        # Regular files only (a FIFO would hold the build), no larger than they can be.
        meta = json.loads(read_regular(path.with_suffix(".json"), MAX_META_BYTES))
        if not _valid_meta(meta):  # e.g. `null`, or an expiry that is no number
            return None
        # No more than a tile can be (decode_tile refuses more).
        return read_regular(path, MAX_TILE_BYTES + 1), meta
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        return None


def _valid_meta(meta) -> bool:
    """Whether a side file holds what _fetch writes: a finite expiry, header-safe strings."""
    if not isinstance(meta, dict):
        return False
    expires = meta.get("expires")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return False
    try:
        if not math.isfinite(expires):
            return False
    except OverflowError:  # an int beyond a float
        return False
    return all(_header_value(meta.get(key)) == meta.get(key) for key in ("etag", "last_modified"))


def _header_value(value) -> str | None:
    """A validator worth sending back (printable ASCII, so a valid header), else None."""
    if isinstance(value, str) and re.fullmatch(r"[\x20-\x7e]{1,1000}", value):
        return value
    return None


def store_cache(path: Path, data: bytes, meta: dict) -> None:
    """Cache a tile: its bytes first, then the metadata that makes it count."""
    write_atomic(path, data)
    write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SIGNATURES = (PNG_SIGNATURE, b"\xff\xd8\xff", b"RIFF", b"GIF8")


def tile_problem(data: bytes) -> str | None:
    """Why bytes cannot be a map tile, from a cheap look (no decoding), or None.

    GDAL decodes a cut-short image without complaint (the lost part black), so
    completeness is checked here: PNG chunk by chunk to IEND (CRCs included),
    JPEG to its end marker, WebP to its RIFF size, GIF to its trailer.
    """
    if len(data) > MAX_TILE_BYTES:
        return "too large"
    if not data.startswith(IMAGE_SIGNATURES):
        return "not an image"
    if data.startswith(PNG_SIGNATURE):
        return _png_problem(data)
    if data.startswith(b"\xff\xd8\xff"):
        return None if data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9") else "broken image"
    if data.startswith(b"RIFF"):
        if len(data) < 12 or data[8:12] != b"WEBP":
            return "not an image"
        return None if len(data) >= 8 + struct.unpack("<I", data[4:8])[0] else "broken image"
    return None if data.rstrip(b"\0\r\n ").endswith(b";") else "broken image"  # GIF


def _png_problem(data: bytes) -> str | None:
    view = memoryview(data)
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", view[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        if zlib.crc32(view[pos + 4:end - 4]) != struct.unpack(">I", view[end - 4:end])[0]:
            return "broken image"
        if pos == len(PNG_SIGNATURE):
            if kind != b"IHDR" or length != 13:
                return "broken image"
            width, height = struct.unpack(">II", view[pos + 8:pos + 16])
            if not _tile_sized(width, height):
                return f"not a map tile ({width}x{height} px)"
        if kind == b"IEND":
            return None
        pos = end
    return "broken image"  # cut short before IEND


def _tile_sized(width: int, height: int) -> bool:
    return width == height and 1 <= width <= MAX_TILE_SIDE


def decode_tile(data: bytes) -> np.ndarray:
    """An image tile's bytes as (3, 256, 256) uint8 RGB; ValueError (the reason) if they
    are not a whole image of a tile's size."""
    problem = tile_problem(data)
    if problem:
        raise ValueError(problem)
    try:
        with warnings.catch_warnings():  # a tile has no georeferencing, and needs none
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as src:
                # Opening reads only the header: refuse a bomb before its pixels are decoded.
                if not _tile_sized(src.width, src.height):
                    raise ValueError(f"not a map tile ({src.width}x{src.height} px)")
                return _tile_pixels(src)
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - GDAL's errors, or a layout _tile_pixels cannot take
        raise ValueError("not an image") from None


def _tile_pixels(src) -> np.ndarray:
    """An open tile as (3, 256, 256) uint8 RGB (palettes expanded, grey spread to 3 bands)."""
    shape = (src.count, tiles.TILE_SIZE, tiles.TILE_SIZE)
    pixels = src.read(out_shape=shape, resampling=Resampling.average)
    if src.count == 1 and src.colorinterp[0] == rasterio.enums.ColorInterp.palette:
        table = np.zeros((256, 3), dtype=np.uint8)
        for index, rgba in src.colormap(1).items():
            table[index] = rgba[:3]
        return np.moveaxis(table[pixels[0]], -1, 0)
    if pixels.dtype != np.uint8:
        raise ValueError("not an 8-bit image")
    if len(pixels) < 3:  # grey, or grey and alpha
        return np.repeat(pixels[:1], 3, axis=0)
    return pixels[:3]


class _Stop(threading.Event):
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


def _opener(read_timeout: float, deadline: float) -> urllib.request.OpenerDirector:
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


class _Fetch(NamedTuple):
    tile: Tile
    data: bytes | None  # decoded later; None when missing
    source: str  # 'cached', 'downloaded', 'stale' or a reason it is missing
    store: tuple[bytes | None, dict] | None = None  # to cache once decoded (bytes None: 304)


def _fetch(opener, provider, tile, cached, timeout, deadline, stop: threading.Event) -> _Fetch:
    """Fetch one tile unless an earlier failure stopped the run or the deadline passed.

    cached: the usable (bytes, metadata) already in the cache, or None; it is
    revalidated, and stands in for the tile if the server fails. Never raises: a
    tile that cannot be had is a reason.
    """
    try:
        return _fetch_tile(opener, provider, tile, cached, timeout, deadline, stop)
    except Exception as err:  # noqa: BLE001 - a bug here must cost a tile, not the build
        stop.set()
        return _Fetch(tile, cached[0] if cached else None,
                      "stale" if cached else f"failed ({type(err).__name__})")


def _fetch_tile(opener, provider, tile, cached, timeout, deadline, stop) -> _Fetch:
    def without(reason: str) -> _Fetch:
        return _Fetch(tile, cached[0] if cached else None, "stale" if cached else reason)

    if time.monotonic() >= deadline:
        return without("deadline")
    if stop.is_set():
        return without("not asked for after an earlier failure")
    request = urllib.request.Request(tile_url(provider, tile), headers={"User-Agent": USER_AGENT})
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
            return _Fetch(tile, cached[0], "downloaded", (None, meta))
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
        "expires": expires, "etag": _header_value(headers.get("ETag")),
        "last_modified": _header_value(headers.get("Last-Modified"))}
    return _Fetch(tile, data, "downloaded", None if meta is None else (data, meta))


def _network_reason(err: Exception) -> str:
    reason = getattr(err, "reason", err) if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, http.client.HTTPException):  # IncompleteRead, BadStatusLine, ...
        return f"bad response ({type(reason).__name__})"
    if isinstance(reason, OSError | str):
        return f"network unreachable ({reason})"
    return f"failed ({type(reason).__name__})"


class _TileCache:
    """Writes to the tile cache; the first failure (read-only, full, a file in the way)
    ends the writing, so a run without a cache is one warning, not one per tile."""

    def __init__(self):
        self.error: str | None = None
        self.skipped = 0

    def store(self, path: Path, data: bytes | None, meta: dict) -> None:
        if self.error is not None:
            self.skipped += 1
            return
        try:
            if data is None:  # revalidated: only the expiry changes
                write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())
            else:
                store_cache(path, data, meta)
        except OSError as err:
            self.error = err.strerror or type(err).__name__
            self.skipped += 1

    def forget(self, path: Path) -> None:
        """Remove a damaged entry, so that it is fetched again next time."""
        for victim in (path.with_suffix(".json"), path):
            try:
                victim.unlink(missing_ok=True)
            except OSError:
                pass  # not writable: read_cache will keep finding it damaged, no worse


def fetch_basemap(
    provider: Provider,
    grid: Grid,
    cache_dir: Path | None = None,
    *,
    max_tiles: int = DEFAULT_MAX_TILES,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[..., Iterable] | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray, np.ndarray, BasemapReport]:
    """The map under a grid: (3, h, w) uint8 RGB, a (h, w) mask of pixels that have map,
    and a report. Raises ParameterError when more than max_tiles must be downloaded.

    timeout bounds each connection and each read (seconds); deadline (seconds,
    DEFAULT_DEADLINE when None) bounds all the downloads together: tiles not had by
    then are missing ('deadline'). Nothing else raises: what the network, a server or
    the cache folder does only makes tiles missing or uncached.
    """
    deadline_at = time.monotonic() + (DEFAULT_DEADLINE if deadline is None else deadline)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()  # a str will do too
    wanted = tiles.grid_tiles(grid)
    rgb = np.zeros((3, grid.height, grid.width), dtype=np.uint8)
    have = np.zeros((grid.height, grid.width), dtype=bool)
    if grid.zoom > provider.max_zoom:
        missing = Counter({f"{provider.name} stops at zoom {provider.max_zoom}": len(wanted)})
        return rgb, have, BasemapReport(len(wanted), 0, 0, 0, missing)

    store = _TileCache()
    now, fresh, to_fetch = time.time(), {}, []  # to_fetch: (tile, usable cache entry)
    for tile in wanted:
        path = cache_path(cache_dir, provider, tile)
        cached = read_cache(path)
        if cached and cached[1]["expires"] > now:
            try:
                fresh[tile] = decode_tile(cached[0])
                continue
            except ValueError:  # a damaged cache file: fetched again like a missing one
                store.forget(path)
                cached = None
        to_fetch.append((tile, cached))
    if len(to_fetch) > max_tiles:
        raise ParameterError(
            f"the basemap needs {len(to_fetch):,} tiles from {provider.name}, more than "
            f"--max-tiles {max_tiles} (tile servers forbid bulk downloads): lower --zoom, "
            "narrow --bounds, or use --basemap none")

    results = []
    stop = _Stop()
    opener = _opener(timeout, deadline_at)
    with ThreadPoolExecutor(max_workers=MAX_CONNECTIONS) as pool:
        futures = [pool.submit(_fetch, opener, provider, tile, cached, timeout, deadline_at, stop)
                   for tile, cached in to_fetch]
        if progress is not None and futures:
            futures = progress(futures, "Fetching map tiles", len(futures))
        for future in futures:
            results.append(future.result())

    missing = Counter()
    sources = Counter(cached=len(fresh))
    placed = dict(fresh)
    for fetched in results:
        if fetched.data is None:
            missing[fetched.source] += 1
            continue
        path = cache_path(cache_dir, provider, fetched.tile)
        try:
            pixels = decode_tile(fetched.data)
        except ValueError as err:
            if fetched.store is not None and fetched.store[0] is not None:  # a new download
                missing[str(err)] += 1
            else:  # the cached copy (kept after a 304 or a failure) is damaged
                store.forget(path)
                missing["damaged cache file"] += 1
            continue
        if fetched.store is not None:  # cached only once it decoded
            store.store(path, *fetched.store)
        sources[fetched.source] += 1
        placed[fetched.tile] = pixels
    for tile, pixels in placed.items():
        row = tile.y * tiles.TILE_SIZE - grid.row_off
        col = tile.x * tiles.TILE_SIZE - grid.col_off
        window = (slice(row, row + tiles.TILE_SIZE), slice(col, col + tiles.TILE_SIZE))
        rgb[(slice(None), *window)] = pixels
        have[window] = True
    report = BasemapReport(len(wanted), sources["cached"], sources["downloaded"],
                           sources["stale"], missing, store.skipped, store.error)
    return rgb, have, report


def describe_missing(report: BasemapReport) -> str | None:
    """One warning line for tiles that could not be had or kept, or None."""
    lost = sum(report.missing.values())
    parts = []
    if lost:
        reasons = ", ".join(f"{n} {why}" for why, n in report.missing.most_common())
        parts.append(f"{lost} of {report.tiles} tiles missing ({reasons}); plain background there")
    if report.uncached:
        parts.append(f"{report.uncached} {'tile' if report.uncached == 1 else 'tiles'} drawn "
                     f"but not cached (tile cache not writable: {report.cache_error})")
    return "basemap: " + "; ".join(parts) if parts else None
