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

This module knows the providers and draws the map under a grid; basemaphttp fetches
the tiles, basemapcache keeps them, basemapimage checks and decodes them.
"""

import hashlib
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import basemaphttp, tiles
from .basemapcache import CacheWriter, read_cache
from .basemapimage import decode_tile
from .cache import default_cache_dir
from .errors import ParameterError
from .options import DEFAULT_DEADLINE, DEFAULT_MAX_TILES, DEFAULT_TIMEOUT
from .tiles import Grid, Tile

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

    store = CacheWriter()
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
    stop = basemaphttp.Stop()
    opener = basemaphttp.opener(timeout, deadline_at)
    with ThreadPoolExecutor(max_workers=basemaphttp.MAX_CONNECTIONS) as pool:
        futures = [pool.submit(basemaphttp.fetch, opener, tile_url(provider, tile), tile,
                               cached, timeout, deadline_at, stop)
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
