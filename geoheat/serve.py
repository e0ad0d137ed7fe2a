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

import errno
import hashlib
import importlib
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import __version__, tiles
from .colormaps import COLORMAP_NAMES
from .errors import InputError, OutputError
from .options import NORMALIZES, SCALINGS, BuildOptions
from .tiles import MAX_ZOOM

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


class DamagedTile(Exception):
    """A tile a tile file holds but cannot give (damaged, cut short, not an image): 500,
    and one line on stderr; the server goes on serving the others."""


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

    def explorer_json(self) -> bytes:
        """The explorer tiles' boxes (render.Renderer.explorer_tiles), made when asked."""
        return self.renderer.once_json("explorer", self.renderer.explorer_tiles)

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
            "explorer": "explorer.json",  # the explorer tiles: a layer the page can show
            **page_legend(r.options, view.normalize),
        }

    def legend(self, z: int, query: str) -> bytes:
        """The legend of zoom z for a tile URL's query (the view): JSON {"ticks": [[heat,
        count], ...]}; NotFound for a bad query."""
        view, _ = self.parse_query(query)
        if not 0 <= z <= tiles.MAX_ZOOM:
            raise NotFound(f"/legend/{z}.json")
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
    """Tiles of an MBTiles file (read-only; TMS rows). What the page needs from its
    metadata (zooms, bounds) is checked when it is opened: InputError, one line."""

    dynamic = False

    def __init__(self, path: Path):
        self.path = path
        try:
            # As a URI (quoted: a name may hold '?' or '#'), to open it read-only.
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                      check_same_thread=False)
        except sqlite3.Error as err:
            raise InputError(f"{path}: cannot open it ({err})") from None
        try:
            rows = self.db.execute("SELECT name, value FROM metadata").fetchall()
            # The tiles' table and columns, and the zooms it holds when metadata has none.
            self.db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles "
                            "LIMIT 0").fetchall()
            self.metadata = {str(name): value for name, value in rows}
            self._meta = self._check_metadata()
        except sqlite3.Error as err:
            self.db.close()
            raise InputError(f"{path}: not an MBTiles file, or damaged ({err})") from None
        except BaseException:
            self.db.close()
            raise
        self.lock = threading.Lock()
        self.format = self._meta["format"]
        stat = path.stat()
        self.identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def _check_metadata(self) -> dict:
        rows, path = self.metadata, self.path
        bounds = None
        if rows.get("bounds") is not None:
            bounds = _lonlat_bounds(str(rows["bounds"]).split(","))
            if bounds is None:
                raise InputError(f"{path}: its metadata's bounds are not west,south,east,north "
                                 f"on Earth: {str(rows['bounds'])[:80]!r}")
        zooms = {}
        for key in ("minzoom", "maxzoom"):
            if rows.get(key) is not None:
                zooms[key] = _zoom(rows[key])
                if zooms[key] is None:
                    raise InputError(f"{path}: its metadata's {key} is not a zoom 0-30: "
                                     f"{str(rows[key])[:80]!r}")
        if len(zooms) < 2:  # as the tiles say
            low, high = self.db.execute(
                "SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
            low, high = (0, MAX_ZOOM) if low is None else (_zoom(low), _zoom(high))
            if low is None or high is None:
                raise InputError(f"{path}: damaged (a tile's zoom_level is not a zoom 0-30)")
            zooms = {"minzoom": low, "maxzoom": high, **zooms}
        if zooms["minzoom"] > zooms["maxzoom"]:
            raise InputError(f"{path}: its metadata's minzoom {zooms['minzoom']} is above its "
                             f"maxzoom {zooms['maxzoom']}")
        name, description = rows.get("name"), rows.get("description")
        fmt = rows.get("format")
        legend = rows.get("geoheat_legend")
        return {"format": fmt.lower() if isinstance(fmt, str) else "png",
                "name": name if isinstance(name, str) else None,
                "description": description if isinstance(description, str) else "",
                "legend": legend if isinstance(legend, str) else None,
                "bounds": bounds, **zooms}

    def meta(self) -> dict:
        m = self._meta
        return _file_meta(self.path, m["name"], self.format, m["bounds"], m["minzoom"],
                          m["maxzoom"], m["description"], m["legend"])

    def tile(self, z, x, y, query):
        if query:
            raise NotFound("a tile file has no views")
        try:
            with self.lock:
                row = self.db.execute(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                    "AND tile_row = ?", (z, x, 2**z - 1 - y)).fetchone()
        except sqlite3.Error as err:  # a damaged page, or the file changed under us
            raise DamagedTile(f"{self.path}: tile {z}/{x}/{y}: {err}") from None
        data = row[0] if row else None
        if data is not None and not isinstance(data, bytes):  # bytes(5) is 5 zero bytes
            what = {int: "an integer", float: "a real number", str: "text"}.get(type(data))
            raise DamagedTile(f"{self.path}: tile {z}/{x}/{y} is no image ({what}, not a blob)")
        return _file_tile(data, self.format, self.etag(z, x, y, query))

    def etag(self, z, x, y, query) -> str:
        return _etag(self.identity, z, x, y)


# A PMTiles file is read with pread, never mapped: a file cut short while it is served
# would kill the server (SIGBUS) through a map. Every size read from the file is checked
# before it is used, and what its directories inflate to is bounded.
PMTILES_HEADER_BYTES = 127
MAX_DIRECTORY_BYTES = 8 * 2**20  # inflated; ~5-10 bytes an entry: ~1 M tiles a directory
MAX_METADATA_BYTES = 8 * 2**20
MAX_FILE_TILE_BYTES = 16 * 2**20  # a heat tile is a few KiB; more is no tile
DIRECTORY_CACHE_ENTRIES = 2 * 2**20  # leaf directories kept decoded (32 bytes an entry)
MAX_DIRECTORY_DEPTH = 4  # the root and at most three levels of leaves (the spec's limit)


class Directory(NamedTuple):
    """A PMTiles directory, decoded: per entry its first tile id, run length (0: a leaf
    directory), byte length and offset (in the tile data, or the leaf section)."""

    tile_ids: np.ndarray  # uint64, increasing
    run_lengths: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    def find(self, tile_id: int) -> int | None:
        """The entry holding tile_id (a tile, or the leaf directory that may), or None."""
        k = int(np.searchsorted(self.tile_ids, np.uint64(tile_id), side="right")) - 1
        if k < 0:
            return None
        run = int(self.run_lengths[k])
        return k if run == 0 or tile_id < int(self.tile_ids[k]) + run else None


def decode_varints(data: bytes, count: int) -> np.ndarray:
    """The first count unsigned LEB128 varints of data, as uint64. ValueError if data
    holds fewer, or one does not fit 64 bits."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)  # each varint's last byte
    if len(ends) < count:
        raise ValueError(f"{len(ends):,} numbers where {count:,} were due")
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    ends = ends[:count]
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    used = raw[:ends[-1] + 1]
    position = np.arange(len(used)) - np.repeat(starts, ends - starts + 1)
    if (position > 9).any() or (raw[ends[position[ends] == 9]] > 1).any():
        raise ValueError("a number beyond 64 bits")
    parts = (used & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


def decode_directory(data: bytes) -> Directory:
    """A PMTiles v3 directory from its uncompressed bytes (the spec's layout: the entry
    count, then the tile id deltas, run lengths, lengths and offsets, each a varint;
    an offset 0 means 'right after the entry before'). ValueError if it does not hold."""
    (count,) = decode_varints(data, 1).tolist()
    if count > len(data):  # every entry takes 4 bytes at least
        raise ValueError(f"{count:,} entries in {len(data):,} bytes")
    values = decode_varints(data, 1 + 4 * count)[1:]
    deltas, runs, lengths, raw_offsets = values.reshape(4, count)
    tile_ids = np.cumsum(deltas, dtype=np.uint64)
    if (tile_ids[1:] <= tile_ids[:-1]).any():  # a zero delta, or a sum past 64 bits
        raise ValueError("tile ids out of order")
    if count and raw_offsets[0] == 0:
        raise ValueError("the first entry has no offset")
    # Offset 0: right after the entry before; else the offset plus one.
    anchored = raw_offsets > 0
    anchor = np.maximum.accumulate(np.where(anchored, np.arange(count), 0))
    before = np.concatenate([[0], np.cumsum(lengths, dtype=np.uint64)[:-1]]).astype(np.uint64)
    # uint64 wraps silently: a damaged offset is caught when it is read (beyond the end).
    offsets = raw_offsets[anchor] - np.uint64(1) + before - before[anchor]
    return Directory(tile_ids, runs, lengths, offsets)


class PMTilesFile:
    """Tiles of a PMTiles (version 3) file. The header, metadata and root directory are
    read and checked when it is opened (InputError, one line); a damaged leaf directory
    or tile is a DamagedTile for the tiles it holds."""

    dynamic = False

    def __init__(self, path: Path):
        try:
            from pmtiles.tile import Compression, TileType, deserialize_header
        except ImportError:
            raise InputError("serving PMTiles needs the pmtiles package: "
                             "pip install pmtiles") from None
        self.path = path
        self.file = open(path, "rb")
        self.read_lock = threading.Lock()  # where there is no pread: seek and read
        self.directories: OrderedDict = OrderedDict()  # (offset, length) -> Directory or error
        self.directories_lock = threading.Lock()
        try:
            head = self._read(0, PMTILES_HEADER_BYTES, "header", opening=True)
            if head[:7] != b"PMTiles" or head[7] != 3:
                raise InputError(f"{path}: {_pmtiles_version_problem(head)}")
            try:
                h = self.header = deserialize_header(head)
            except ValueError as err:  # an unknown compression or tile type
                raise InputError(f"{path}: not a PMTiles file this geoheat reads "
                                 f"(header: {err})") from None
            self.internal = h["internal_compression"]
            self.tiles_compressed = h["tile_compression"]
            unread = {Compression.BROTLI, Compression.ZSTD}
            for what, compression in (("directories", self.internal),
                                      ("tiles", self.tiles_compressed)):
                if compression in unread:
                    raise InputError(f"{path}: its {what} are compressed with "
                                     f"{compression.name.lower()}, which geoheat does not read")
            # Directories: gzip unless said otherwise (as the pmtiles package reads them).
            self.gzip_directories = self.internal != Compression.NONE
            self.gzip_tiles = self.tiles_compressed == Compression.GZIP
            self.root = self._directory(h["root_offset"], h["root_length"], opening=True)
            self._meta = self._check_header(h, self._metadata())
        except DamagedTile as err:
            self.file.close()
            raise InputError(str(err)) from None
        except BaseException:
            self.file.close()
            raise
        kinds = {TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}
        self.format = kinds.get(h["tile_type"], "png")
        stat = os.fstat(self.file.fileno())
        self.identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def _read(self, offset: int, length: int, what: str, opening: bool = False) -> bytes:
        """length bytes at offset, all of them: DamagedTile if the file ends before."""
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        if offset + length > size:
            where = "the file" if opening else "the file (cut short since it was opened?)"
            raise DamagedTile(f"{self.path}: its {what} lies beyond the end of {where}")
        if hasattr(os, "pread"):
            data = os.pread(fd, length, offset)
        else:
            with self.read_lock:
                self.file.seek(offset)
                data = self.file.read(length)
        if len(data) != length:
            raise DamagedTile(f"{self.path}: its {what} is cut short")
        return data

    def _inflate(self, data: bytes, compressed: bool, limit: int, what: str) -> bytes:
        """Data as stored (gzip or not), at most limit bytes inflated: a directory that
        inflates beyond it is a bomb (0.8 GB on every request, before)."""
        if not compressed:
            return data
        try:
            inflater = zlib.decompressobj(wbits=47)  # a gzip or zlib header
            out = inflater.decompress(data, limit + 1)
        except zlib.error as err:
            raise DamagedTile(f"{self.path}: its {what} is damaged ({err})") from None
        if len(out) > limit:
            raise DamagedTile(f"{self.path}: its {what} inflates beyond "
                              f"{limit // 2**20} MiB (damaged, or a decompression bomb)")
        if not inflater.eof:
            raise DamagedTile(f"{self.path}: its {what} is cut short")
        return out

    def _directory(self, offset: int, length: int, opening: bool = False) -> Directory:
        """A directory, decoded once: kept (and so is why one cannot be)."""
        key = (offset, length)
        with self.directories_lock:
            found = self.directories.get(key)
            if found is not None:
                self.directories.move_to_end(key)
        if found is None:
            what = "root directory" if opening else f"directory at {offset:,}"
            try:
                if length > MAX_DIRECTORY_BYTES:
                    raise DamagedTile(f"{self.path}: its {what} takes {length:,} bytes, "
                                      "more than a directory can")
                data = self._inflate(self._read(offset, length, what, opening),
                                     self.gzip_directories, MAX_DIRECTORY_BYTES, what)
                try:
                    found = decode_directory(data)
                except ValueError as err:
                    raise DamagedTile(f"{self.path}: its {what} is damaged ({err})") from None
            except DamagedTile as err:
                found = str(err)  # kept too: a bomb is not inflated again on every request
            if not opening:
                self._keep_directory(key, found)
        if isinstance(found, str):
            raise DamagedTile(found)
        return found

    def _keep_directory(self, key, found) -> None:
        with self.directories_lock:
            self.directories[key] = found
            total = sum(len(d.tile_ids) if isinstance(d, Directory) else 1
                        for d in self.directories.values())
            while total > DIRECTORY_CACHE_ENTRIES and len(self.directories) > 1:
                _, dropped = self.directories.popitem(last=False)
                total -= len(dropped.tile_ids) if isinstance(dropped, Directory) else 1

    def _metadata(self) -> dict:
        """The JSON metadata; {} if it cannot be read or is no object (only the name and
        description come from it)."""
        h = self.header
        if h["metadata_length"] > MAX_METADATA_BYTES:
            return {}
        try:
            data = self._inflate(self._read(h["metadata_offset"], h["metadata_length"],
                                            "metadata"),
                                 self.gzip_directories, MAX_METADATA_BYTES, "metadata")
            metadata = json.loads(data)
        except (DamagedTile, ValueError):
            return {}
        return metadata if isinstance(metadata, dict) else {}

    def _check_header(self, h, metadata: dict) -> dict:
        path = self.path
        bounds = _lonlat_bounds([h["min_lon_e7"] / 1e7, h["min_lat_e7"] / 1e7,
                                 h["max_lon_e7"] / 1e7, h["max_lat_e7"] / 1e7])
        if bounds is None:
            raise InputError(f"{path}: its header's bounds are not on Earth (lon "
                             f"{h['min_lon_e7'] / 1e7}..{h['max_lon_e7'] / 1e7}, lat "
                             f"{h['min_lat_e7'] / 1e7}..{h['max_lat_e7'] / 1e7})")
        if not h["min_zoom"] <= h["max_zoom"] <= 30:
            raise InputError(f"{path}: its header's zooms are not zooms 0-30 "
                             f"({h['min_zoom']}..{h['max_zoom']})")
        name, description = metadata.get("name"), metadata.get("description")
        legend = metadata.get("geoheat_legend")
        return {"name": name if isinstance(name, str) else None,
                "description": description if isinstance(description, str) else "",
                "legend": legend if isinstance(legend, str) else None,
                "bounds": bounds, "minzoom": h["min_zoom"], "maxzoom": h["max_zoom"]}

    def meta(self) -> dict:
        m = self._meta
        return _file_meta(self.path, m["name"], self.format, m["bounds"], m["minzoom"],
                          m["maxzoom"], m["description"], m["legend"])

    def tile(self, z, x, y, query):
        if query:
            raise NotFound("a tile file has no views")
        from pmtiles.tile import zxy_to_tileid

        h = self.header
        tile_id = zxy_to_tileid(z, x, y)
        directory = self.root
        for _ in range(MAX_DIRECTORY_DEPTH):
            k = directory.find(tile_id)
            if k is None:
                break
            offset, length = int(directory.offsets[k]), int(directory.lengths[k])
            if int(directory.run_lengths[k]) == 0:  # a leaf directory
                directory = self._directory(h["leaf_directory_offset"] + offset, length)
                continue
            if length > MAX_FILE_TILE_BYTES:
                raise DamagedTile(f"{self.path}: tile {z}/{x}/{y} takes {length:,} bytes, "
                                  "more than a tile can")
            what = f"tile {z}/{x}/{y}"
            data = self._inflate(self._read(h["tile_data_offset"] + offset, length, what),
                                 self.gzip_tiles, MAX_FILE_TILE_BYTES,
                                 what)
            return _file_tile(data, self.format, self.etag(z, x, y, query))
        return _file_tile(None, self.format, self.etag(z, x, y, query))

    def etag(self, z, x, y, query) -> str:
        return _etag(self.identity, z, x, y)


def _pmtiles_version_problem(head: bytes) -> str:
    """Why a file's first bytes are not a PMTiles version 3 header, in words."""
    if head[:7] == b"PMTiles":
        return f"PMTiles version {head[7]}; geoheat reads version 3"
    if head[:2] == b"PM" and int.from_bytes(head[2:4], "little") in (1, 2):
        return (f"PMTiles version {int.from_bytes(head[2:4], 'little')}; geoheat reads "
                "version 3 (convert it: pmtiles convert)")
    return "not a PMTiles file (no PMTiles header)"


def _lonlat_bounds(values) -> list[float] | None:
    """West, south, east, north as floats, or None unless they are a box on Earth."""
    try:
        west, south, east, north = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):  # NaN: False
        return None
    return [west, south, east, north]


def _zoom(value) -> int | None:
    """A zoom level 0-30 from a metadata value (an integer, or its digits), else None."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,2}\s*", value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 30:
        return value
    return None


# What a geoheat build's tile file says of its legend (pipeline._write), and all the page
# takes from it: a damaged or foreign file's other keys never reach /meta.json.
LEGEND_KEYS = ("legend", "unit", "local", "ramps", "view")


def _file_meta(path, name, fmt, bounds, minzoom, maxzoom, description, legend=None) -> dict:
    meta = {"name": name or path.stem, "generator": f"geoheat {__version__}",
            "dynamic": False, "tiles": "heat/{z}/{x}/{y}.png", "format": fmt,
            "bounds": bounds, "minzoom": minzoom, "maxzoom": maxzoom,
            "description": description or str(path.name)}
    try:  # a geoheat build's tiles carry their legend, level by level
        found = json.loads(legend) if legend else None
    except ValueError:
        found = None
    if isinstance(found, dict):
        meta.update({key: found[key] for key in LEGEND_KEYS if key in found})
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


def load_renderer(options: BuildOptions, on_warning: Callable | None = None, progress=None):
    """Read (through the parse cache) what the options name, for rendering tiles."""
    from .reading import read_files
    from .render import Renderer
    from .sources import find_sources

    sources = find_sources(options.inputs, options.pattern, on_warning=on_warning)
    parsed = read_files(sources, options.parse_cache, options.jobs, progress,
                        options.max_file_size)
    # The blur's scipy takes ~0.25 s to import: meanwhile, not before the first tile. Only
    # now: a worker forked while this thread held an import lock waited for it forever.
    threading.Thread(target=importlib.import_module, args=("scipy.ndimage",), daemon=True,
                     name="geoheat-import").start()
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
    result.tiles, from pipeline.run(keep_tiles=True)), as its MBTiles hold them, and the
    explorer tiles as geoheat serve gives them (render.Renderer.explorer_tiles; the
    parse cache makes the second read cheap). Returns the number of tiles written."""
    renderer = load_renderer(options)  # the build has warned already
    explorer = renderer.once_json("explorer", renderer.explorer_tiles)
    return write_site(folder, result.tiles, explorer=explorer)


def check_site_folder(folder: Path) -> None:
    """Refuse, before any work, a site folder that would not be written."""
    folder = Path(folder)
    if folder.is_symlink():
        raise OutputError(f"{folder}: is a link; geoheat does not follow it: name a folder")
    if folder.exists() and not _is_site(folder):
        raise OutputError(f"{folder}: exists and is not a geoheat site; name a new folder")
    if not folder.resolve().parent.is_dir():
        raise OutputError(f"{folder}: its folder {folder.resolve().parent} does not exist")
    from .outputs import check_replaceable_folder

    check_replaceable_folder(folder)  # the site is renamed into place, replacing it


def site_meta(tileset) -> dict:
    """The page's settings for a site of a build's tiles (what serving its MBTiles gives)."""
    rows = tileset.metadata
    meta = _file_meta(Path(rows.get("name", "geoheat")), rows.get("name"), "png",
                      [float(v) for v in rows["bounds"].split(",")], tileset.min_zoom,
                      tileset.max_zoom, rows.get("description", ""), rows.get("geoheat_legend"))
    meta.update(tiles="tiles/{z}/{x}/{y}.png", index="tiles/index.json")
    return meta


def write_site(folder: Path, tileset, progress=None, explorer: bytes | None = None) -> int:
    """A static site in folder: index.html, the page's files, Leaflet's (copied from the
    installed package) and a build's heat tiles (a pipeline.TileSet) as an XYZ folder
    tiles/z/x/y.png, with tiles/index.json listing them (the page asks for no tile the
    site lacks: no 404 in the browser's console); explorer: the explorer tiles' JSON
    (explorer.json, a layer the page offers; None: none).

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
        if explorer is not None:
            meta["explorer"] = "explorer.json"
            (temp / "explorer.json").write_bytes(explorer)
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
