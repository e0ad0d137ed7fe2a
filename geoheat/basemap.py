"""Basemap tiles under the heat, fetched politely, cached on disk, safe offline.

Follows the OpenStreetMap tile usage policy: a User-Agent naming geoheat, at most
two connections at once, a disk cache reused across runs that honours the
server's expiry headers (seven days where it sends none), a refusal above a tile
count, and no retries within a run: a connection failure, a timeout or a 429/5xx
answer stops the remaining downloads, and the map is drawn with what was had.
"""

import email.utils
import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
import warnings
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
from .options import DEFAULT_MAX_TILES, DEFAULT_TIMEOUT
from .cache import default_cache_dir, write_atomic
from .errors import ParameterError
from .tiles import Grid, Tile

USER_AGENT = f"geoheat/{__version__} (local GPS track heatmap; python-urllib)"
MAX_CONNECTIONS = 2
DEFAULT_FRESHNESS = 7 * 24 * 3600  # the OSM policy's minimum when a server sends no expiry
OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


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


def resolve_provider(spec: str | None, api_key: str | None = None) -> Provider | None:
    """The Provider for --basemap: 'osm', 'none', an xyzservices name or a URL template."""
    if spec is None or spec.lower() == "none":
        return None
    if spec.lower() == "osm":
        return Provider("OpenStreetMap", OSM_URL, "\u00a9 OpenStreetMap contributors", 19)
    if all(key in spec for key in ("{z}", "{x}", "{y}")):
        if not re.match(r"https?://", spec):
            raise ParameterError(f"basemap URL must start with http:// or https://: {spec}")
        return Provider(spec, spec, "")
    try:
        import xyzservices.providers as xyz

        provider = xyz.query_name(spec)
    except ValueError:
        raise ParameterError(
            f"unknown basemap {spec!r}: use osm, none, an xyzservices name such as "
            "OpenStreetMap.HOT, or a URL template with {z}/{x}/{y}") from None
    if api_key:
        provider = provider(apikey=api_key)
    elif provider.requires_token():
        raise ParameterError(f"basemap {provider.name} needs an API key: give it with --api-key")
    url = provider.build_url(scale_factor="")
    return Provider(provider.name, url, provider.get("attribution", ""),
                    int(provider.get("max_zoom", tiles.MAX_ZOOM)))


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
    if match:
        return now + int(match.group(1))
    if headers.get("Expires"):
        try:
            return email.utils.parsedate_to_datetime(headers["Expires"]).timestamp()
        except (TypeError, ValueError):
            return now  # an unreadable date means already expired (RFC 9111)
    return now + DEFAULT_FRESHNESS


def read_cache(path: Path) -> tuple[bytes, dict] | None:
    """A cached tile's bytes and metadata, or None (absent or damaged)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        return path.read_bytes(), meta
    except (OSError, ValueError):
        return None


def store_cache(path: Path, data: bytes, meta: dict) -> None:
    """Cache a tile: its bytes first, then the metadata that makes it count."""
    write_atomic(path, data)
    write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())


IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"GIF8")


def decode_tile(data: bytes) -> np.ndarray:
    """An image tile's bytes as (3, 256, 256) uint8 RGB; ValueError if not an image."""
    if not data.startswith(IMAGE_SIGNATURES):
        raise ValueError("not an image")
    try:
        with warnings.catch_warnings():  # a tile has no georeferencing, and needs none
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as src:
                return _tile_pixels(src)
    except rasterio.errors.RasterioError:
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


class _Fetch(NamedTuple):
    tile: Tile
    data: bytes | None  # decoded later; None when missing
    source: str  # 'cached', 'downloaded', 'stale' or a reason it is missing


def _fetch(provider, tile, path, cached, timeout, stop: threading.Event) -> _Fetch:
    """Fetch one tile unless an earlier failure stopped the run; cache what is good.

    cached: the usable (bytes, metadata) already in the cache, or None; it is
    revalidated, and stands in for the tile if the server fails.
    """
    if stop.is_set():
        return _Fetch(tile, cached[0] if cached else None,
                      "stale" if cached else "not asked for after an earlier failure")
    request = urllib.request.Request(tile_url(provider, tile), headers={"User-Agent": USER_AGENT})
    if cached:
        if cached[1].get("etag"):
            request.add_header("If-None-Match", cached[1]["etag"])
        if cached[1].get("last_modified"):
            request.add_header("If-Modified-Since", cached[1]["last_modified"])
    now = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data, headers = response.read(), response.headers
    except urllib.error.HTTPError as err:
        if err.code == 304 and cached:
            meta = {**cached[1], "expires": expiry(err.headers, now) or now}
            write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())
            return _Fetch(tile, cached[0], "downloaded")
        reason = f"HTTP {err.code}"
        if err.code == 429 or err.code >= 500:  # the server asks us to back off: stop here
            stop.reason = reason
            stop.set()
        return _Fetch(tile, cached[0] if cached else None, "stale" if cached else reason)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = _network_reason(err)
        stop.reason = reason
        stop.set()  # offline or unreachable: the other tiles would fail the same way
        return _Fetch(tile, cached[0] if cached else None, "stale" if cached else reason)
    if not data.startswith(IMAGE_SIGNATURES):  # fully decoded, in one thread, later
        return _Fetch(tile, cached[0] if cached else None, "stale" if cached else "not an image")
    expires = expiry(headers, now)
    if expires is not None:
        store_cache(path, data, {"expires": expires, "etag": headers.get("ETag"),
                                 "last_modified": headers.get("Last-Modified")})
    return _Fetch(tile, data, "downloaded")


def _network_reason(err: Exception) -> str:
    reason = getattr(err, "reason", err)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    return f"network unreachable ({reason})"


def fetch_basemap(
    provider: Provider,
    grid: Grid,
    cache_dir: Path | None = None,
    *,
    max_tiles: int = DEFAULT_MAX_TILES,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[..., Iterable] | None = None,
) -> tuple[np.ndarray, np.ndarray, BasemapReport]:
    """The map under a grid: (3, h, w) uint8 RGB, a (h, w) mask of pixels that have map,
    and a report. Raises ParameterError when more than max_tiles must be downloaded."""
    cache_dir = cache_dir or default_cache_dir()
    wanted = tiles.grid_tiles(grid)
    rgb = np.zeros((3, grid.height, grid.width), dtype=np.uint8)
    have = np.zeros((grid.height, grid.width), dtype=bool)
    if grid.zoom > provider.max_zoom:
        missing = Counter({f"{provider.name} stops at zoom {provider.max_zoom}": len(wanted)})
        return rgb, have, BasemapReport(len(wanted), 0, 0, 0, missing)

    now, fresh, to_fetch = time.time(), {}, []  # to_fetch: (tile, usable cache entry)
    for tile in wanted:
        cached = read_cache(cache_path(cache_dir, provider, tile))
        if cached and cached[1].get("expires", 0) > now:
            try:
                fresh[tile] = decode_tile(cached[0])
                continue
            except ValueError:  # a damaged cache file: fetched again like a missing one
                cached = None
        to_fetch.append((tile, cached))
    if len(to_fetch) > max_tiles:
        raise ParameterError(
            f"the basemap needs {len(to_fetch):,} tiles from {provider.name}, more than "
            f"--max-tiles {max_tiles} (tile servers forbid bulk downloads): lower --zoom, "
            "narrow --bounds, or use --basemap none")

    results = []
    stop = _Stop()
    with ThreadPoolExecutor(max_workers=MAX_CONNECTIONS) as pool:
        futures = [pool.submit(_fetch, provider, tile, cache_path(cache_dir, provider, tile),
                               cached, timeout, stop) for tile, cached in to_fetch]
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
        try:
            pixels = decode_tile(fetched.data)
        except ValueError as err:
            if fetched.source == "downloaded":  # never leave a broken tile in the cache
                path = cache_path(cache_dir, provider, fetched.tile)
                path.with_suffix(".json").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                missing[str(err)] += 1
            else:
                missing["damaged cache file"] += 1
            continue
        sources[fetched.source] += 1
        placed[fetched.tile] = pixels
    for tile, pixels in placed.items():
        row = tile.y * tiles.TILE_SIZE - grid.row_off
        col = tile.x * tiles.TILE_SIZE - grid.col_off
        window = (slice(row, row + tiles.TILE_SIZE), slice(col, col + tiles.TILE_SIZE))
        rgb[(slice(None), *window)] = pixels
        have[window] = True
    report = BasemapReport(len(wanted), sources["cached"], sources["downloaded"],
                           sources["stale"], missing)
    return rgb, have, report


def describe_missing(report: BasemapReport) -> str | None:
    """One warning line for tiles that could not be had, or None."""
    lost = sum(report.missing.values())
    if not lost:
        return None
    reasons = ", ".join(f"{n} {why}" for why, n in report.missing.most_common())
    return f"basemap: {lost} of {report.tiles} tiles missing ({reasons}); plain background there"
