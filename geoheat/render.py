"""Heat tiles on request, at any zoom, the same as a build's: the renderer `geoheat serve`
and `geoheat build --site` use.

A build's heat at zoom z depends on the whole level, not just one tile: the rank is
over every lit pixel of the level (heat.SCALERS; under --normalize local, within
~2 km: contrast.local_scale_tiles). So a `Level` (one zoom, one filter, one
scaling) is made once, from the build's own stage functions in the build's order
(select_activities, extent.choose_area, rasterize.select_points, count_tracks,
SCALERS, blur_tiles), and keeps each tile's heat as its colormap index (what
colour.shade_rgba makes of it: colour.lut_index), deflated (a few KiB a tile). A
tile is then that block looked up in the colormap and PNG-encoded: a millisecond.

The spatial index is each activity's bounding box (after the extent cut): a level
counts only the activities that cross its grid, and a tile that no activity comes
near (within the blur's reach) is answered empty without making its level.

Selections (the points of a filter), levels and encoded tiles are kept in LRU caches
bounded in bytes; the newest selection and level stay even when one alone is larger
(made again for every tile, it would cost far more than its memory). Everything here
is safe to call from several threads: a level is made once, by the first thread that
asks for it, while the others wait for it.
"""

import hashlib
import json
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import tiles
from .activities import select_activities
from .cache import ParsedFile
from .colormaps import COLORMAP_NAMES, lut, with_alpha
from .colour import lut_index
from .errors import GeoheatError
from .extent import choose_area, inside
from .heat import SCALERS, blur_tiles, kernel_radius, legend_ticks
from .options import SCALINGS, BuildOptions, available_memory
from .rasterize import count_tracks, select_points
from .tiles import Bbox, Grid, TileKey

SIZE = tiles.TILE_SIZE
# Default cache bounds: the levels' heat (deflated colormap indices, a few KiB a lit tile),
# the encoded PNGs and the selections' points.
LEVEL_CACHE_BYTES = 256 * 2**20
TILE_CACHE_BYTES = 64 * 2**20
SELECTION_CACHE_BYTES = 256 * 2**20  # the points of the filters asked for last
# PNG deflate level: on heat tiles 1 takes half the time of 6 (1.0 against 2.0 ms a tile)
# for 40% more bytes (6.3 against 4.4 KiB), and GDAL's PNG driver 5 ms
# (bench/bench_serve.py); the bytes go over loopback or to a static host.
PNG_LEVEL = 1


class View(NamedTuple):
    """What the page can change without re-reading: which activities, and how heat is
    scaled. types/years None: all."""

    types: tuple[str, ...] | None
    years: tuple[int, ...] | None
    scaling: str


class Selection(NamedTuple):
    """The points a view draws (as a build with its filters would), with the index."""

    xy: np.ndarray
    offsets: np.ndarray  # segment offsets into xy
    times: np.ndarray
    area: Bbox | None  # the extent (None: nothing to draw)
    activity_offsets: np.ndarray  # activity i's points: xy[a[i]:a[i + 1]]
    boxes: np.ndarray  # (activities, 4) left, bottom, right, top of each activity's points
    ends: np.ndarray | None = None  # with hidden ends: privacy.end_distances of each point


EMPTY_SELECTION = Selection(np.empty((0, 2)), np.zeros(1, np.int64), np.empty(0), None,
                            np.zeros(1, np.int64), np.empty((0, 4)))


@dataclass
class Level:
    """One zoom level's heat for one view: the grid and each lit tile's colormap index."""

    zoom: int
    grid: Grid | None
    index: dict[TileKey, bytes]  # zlib of each (256, 256) uint8 colour.lut_index(heat)
    problem: str | None = None  # why the level is empty though there are tracks (too big)
    ticks: tuple = ()  # its legend: (heat, count) pairs (heat.legend_ticks; local: none)

    @property
    def nbytes(self) -> int:
        return sum(len(block) + 100 for block in self.index.values()) + 512

    def block(self, key: TileKey) -> np.ndarray | None:
        """A tile's (256, 256) uint8 colormap indices, or None without heat."""
        data = self.index.get(key)
        if data is None:
            return None
        return np.frombuffer(zlib.decompress(data), dtype=np.uint8).reshape(SIZE, SIZE)


class BytesLRU:
    """A thread-safe LRU mapping whose values' sizes (size_of) sum to at most max_bytes."""

    def __init__(self, max_bytes: int, size_of: Callable = len, keep_oversize: bool = False):
        self.max_bytes, self.size_of, self.keep_oversize = max_bytes, size_of, keep_oversize
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        size = self.size_of(value)
        with self.lock:
            if key in self.items:
                self.bytes -= self.size_of(self.items.pop(key))
            if size > self.max_bytes and not self.keep_oversize:
                return  # larger than the whole cache: not kept
            self.items[key] = value
            self.bytes += size
            # (An oversize value, where kept, stays alone: the newest item never goes.)
            while self.bytes > self.max_bytes and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.bytes -= self.size_of(old)


def encode_png(rgba: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """A (4, h, w) uint8 RGBA array as PNG bytes (8-bit RGBA, no filter, zlib deflate)."""
    _, height, width = rgba.shape
    rows = np.empty((height, 1 + width * 4), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = rgba.transpose(1, 2, 0).reshape(height, width * 4)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + chunk(b"IEND", b""))


EMPTY_PNG = encode_png(np.zeros((4, SIZE, SIZE), dtype=np.uint8), 9)


def valid_tile(z: int, x: int, y: int) -> bool:
    """Whether z/x/y names a tile of the XYZ pyramid (zoom 0-19)."""
    return 0 <= z <= tiles.MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


class Renderer:
    """Heat tiles of parsed activity files, drawn with a build's settings.

    options: the build's settings (mode, sigma, extent, bounds, keep_duplicates, and the
    default view: types, years, scaling, colormap). parsed: reading.read_files' result.
    """

    def __init__(self, options: BuildOptions, parsed: Sequence[ParsedFile],
                 level_cache_bytes: int = LEVEL_CACHE_BYTES,
                 tile_cache_bytes: int = TILE_CACHE_BYTES,
                 selection_cache_bytes: int = SELECTION_CACHE_BYTES, on_warning=None):
        self.options = options
        self.parsed = list(parsed)
        self.default_view = View(options.types, options.years, options.scaling)
        self.default_cmap = options.colormap
        self.levels = BytesLRU(level_cache_bytes, lambda level: level.nbytes, keep_oversize=True)
        self.pngs = BytesLRU(tile_cache_bytes)
        # The points of the last filters asked for (2 million points: ~80 MB each).
        self.selections = BytesLRU(selection_cache_bytes, _selection_bytes, keep_oversize=True)
        self._locks: dict = {}
        self._locks_lock = threading.Lock()
        self._json: dict[str, bytes] = {}
        self.warn = on_warning or (lambda message: None)
        self._warned: set = set()
        drawable = [p for p in self.parsed if p.error is None and p.points]
        self.types = sorted({p.activity_type for p in drawable if p.activity_type})
        self.years = sorted({p.start.year for p in drawable if p.start is not None})
        self.privacy = _privacy(options, self.parsed)
        # What the tiles depend on besides the view: the files' content and the settings.
        identity = hashlib.sha256(repr((self.privacy,
            [(p.name, p.points, p.start, p.activity_type, float(p.xy.sum()) if p.points else 0)
             for p in self.parsed],
            options.mode, options.sigma, options.extent, options.bounds,
            options.keep_duplicates, options.normalize)).encode())
        self.fingerprint = identity.hexdigest()[:16]

    # The steps, each once per key (threads asking meanwhile wait for the first).

    def _once(self, cache: BytesLRU, key, make):
        value = cache.get(key)
        if value is not None:
            return value
        with self._locks_lock:
            lock = self._locks.setdefault((id(cache), key), threading.Lock())
        with lock:
            value = cache.get(key)
            if value is None:
                value = make()
                cache.put(key, value)
        with self._locks_lock:
            self._locks.pop((id(cache), key), None)
        return value

    def selection(self, view: View) -> Selection:
        """The points the view draws: the build's select and extent stages."""
        return self._once(self.selections, (view.types, view.years),
                          lambda: self._select(view))

    def _select(self, view: View) -> Selection:
        options = self.options
        kept, _ = select_activities(self.parsed, view.years, view.types,
                                    options.keep_duplicates)
        if not kept:
            return EMPTY_SELECTION
        box, area = choose_area([a.summary for a in kept], options.bounds, options.extent)
        # Each activity's points inside the box, as the build cuts them (count_activities).
        parts, boxes = [], np.full((len(kept), 4), np.nan)
        ends = []
        for i, activity in enumerate(kept):
            keep = (inside(activity.xy, box) if box is not None
                    else np.ones(activity.points, dtype=bool))
            keep, activity_ends = _hidden(activity, keep, self.privacy, options.mode)
            xy, offsets = select_points(activity.xy, activity.offsets, keep)
            times = activity.times[keep] if activity.times is not None else np.full(len(xy),
                                                                                    np.nan)
            parts.append((xy, offsets, times))
            if activity_ends is not None:
                ends.append(activity_ends[keep])
            if len(xy):
                boxes[i] = xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()
        if not any(len(xy) for xy, _, _ in parts):  # no point inside --bounds
            return EMPTY_SELECTION
        starts = np.cumsum([0] + [len(xy) for xy, _, _ in parts])
        offsets = np.concatenate([o[:-1] + s for (_, o, _), s in zip(parts, starts)]
                                 + [[starts[-1]]]).astype(np.int64)
        return Selection(np.concatenate([p[0] for p in parts]), offsets,
                         np.concatenate([p[2] for p in parts]), area, starts.astype(np.int64),
                         boxes, np.concatenate(ends) if ends else None)

    def level(self, zoom: int, view: View) -> Level:
        """Zoom level `zoom`'s heat for a view, as a build at that zoom makes it."""
        return self._once(self.levels, (zoom, view), lambda: self._level(zoom, view))

    def _level(self, zoom: int, view: View) -> Level:
        chosen = self.selection(view)
        if chosen.area is None:
            return Level(zoom, None, {})
        grid = tiles.grid_covering(chosen.area, zoom)
        xy, offsets, times, ends = self._crossing(chosen, tiles.grid_bounds(grid))
        hidden = None
        if self.privacy is not None and self.options.mode == "lines":
            from .privacy import SampleFilter

            hidden = SampleFilter(xy, ends, self.privacy)
        try:
            counts = count_tracks(xy, offsets, grid, self.options.mode, available_memory(),
                                  times, hidden=hidden)
        except GeoheatError as err:  # rasterize.TooBig: more than memory holds
            if zoom not in self._warned:
                self._warned.add(zoom)
                self.warn(f"zoom {zoom}: no heat drawn: {err}")
            return Level(zoom, grid, {}, problem=str(err))
        heat = blur_tiles(self._scaler(view)(counts, grid), self.options.sigma, grid)
        ticks = () if self.options.normalize == "local" else tuple(
            legend_ticks(counts, view.scaling))
        index = {}
        for key, block in heat.items():
            block = lut_index(block)
            if block.any():  # mostly zeros: ~20x smaller deflated, ~0.1 ms to inflate
                index[key] = zlib.compress(block.tobytes(), 1)
        return Level(zoom, grid, index, ticks=ticks)

    def _scaler(self, view: View):
        """The build's scaler (pipeline._scaler): local contrast under --normalize local,
        else the view's scaling."""
        if self.options.normalize == "local":
            from .contrast import local_scale_tiles

            return local_scale_tiles
        return SCALERS[view.scaling]

    @staticmethod
    def _crossing(chosen: Selection, box: Bbox):
        """The points of the activities whose bounding box meets box (with their segment
        offsets, times and privacy.end_distances): what a count over box needs, no more."""
        boxes = chosen.boxes
        meets = ((boxes[:, 0] <= box.right) & (boxes[:, 2] >= box.left)
                 & (boxes[:, 1] <= box.top) & (boxes[:, 3] >= box.bottom))
        if meets.all():
            return chosen.xy, chosen.offsets, chosen.times, chosen.ends
        starts, ends = chosen.activity_offsets[:-1][meets], chosen.activity_offsets[1:][meets]
        take = np.zeros(len(chosen.xy), dtype=bool)
        for a, b in zip(starts, ends):
            take[a:b] = True
        return (chosen.xy[take], select_points(chosen.xy, chosen.offsets, take)[1],
                chosen.times[take], None if chosen.ends is None else chosen.ends[take])

    def once_json(self, name: str, make: Callable) -> bytes:
        """make()'s JSON, made once (threads asking meanwhile wait for the first)."""
        with self._locks_lock:
            lock = self._locks.setdefault(("json", name), threading.Lock())
        with lock:
            if name not in self._json:
                self._json[name] = json.dumps(make()).encode()
        return self._json[name]

    def explorer_tiles(self, limit: int = 5000) -> list[list[float]] | None:
        """The explorer tiles (options.explorer_zoom) the default view's activities pass
        through, privacy cut out, as [west, south, east, north]; None above limit (the
        page draws each one)."""
        from .explorer import activity_tiles, lonlat_boxes

        options, zoom = self.options, self.options.explorer_zoom
        kept, _ = select_activities(self.parsed, options.years, options.types,
                                    options.keep_duplicates)
        found = np.unique(np.concatenate([activity_tiles(a, self.privacy, zoom) for a in kept]
                                         or [np.empty((0, 2), np.int64)]), axis=0)
        return lonlat_boxes(found, zoom) if len(found) <= limit else None

    def near_tracks(self, z: int, x: int, y: int, view: View) -> bool:
        """Whether any activity of the view comes within the blur's reach of tile z/x/y."""
        chosen = self.selection(view)
        if chosen.area is None or not len(chosen.boxes):
            return False
        box = tiles.xy_bounds(tiles.Tile(x, y, z))
        reach = (kernel_radius(self.options.sigma) + 1) * tiles.resolution(z)
        boxes = chosen.boxes
        return bool(np.any((boxes[:, 0] <= box.right + reach) & (boxes[:, 2] >= box.left - reach)
                           & (boxes[:, 1] <= box.top + reach)
                           & (boxes[:, 3] >= box.bottom - reach)))

    def index_tile(self, z: int, x: int, y: int, view: View) -> np.ndarray | None:
        """Tile z/x/y's colormap indices (uint8, 256x256), or None where it has no heat."""
        if not valid_tile(z, x, y) or not self.near_tracks(z, x, y, view):
            return None
        return self.level(z, view).block((x, y))

    def rgba_tile(self, z: int, x: int, y: int, view: View | None = None,
                  cmap: str | None = None) -> np.ndarray | None:
        """Tile z/x/y as (4, 256, 256) RGBA, as the build's MBTiles hold it, or None."""
        index = self.index_tile(z, x, y, view or self.default_view)
        if index is None:
            return None
        return colour_index(index, cmap or self.default_cmap)

    def png_tile(self, z: int, x: int, y: int, view: View | None = None,
                 cmap: str | None = None) -> bytes:
        """Tile z/x/y as PNG bytes (a transparent tile where there is no heat)."""
        view, cmap = view or self.default_view, cmap or self.default_cmap
        key = (z, x, y, view, cmap)
        data = self.pngs.get(key)
        if data is None:
            rgba = self.rgba_tile(z, x, y, view, cmap)
            data = EMPTY_PNG if rgba is None else encode_png(rgba)
            self.pngs.put(key, data)
        return data

    def etag(self, z: int, x: int, y: int, view: View, cmap: str) -> str:
        """The tile's entity tag: a hash of the data, the settings, the view and z/x/y."""
        text = repr((self.fingerprint, view, cmap, z, x, y))
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:24] + '"'

    def view(self, types=None, years=None, scaling=None) -> View:
        """A view from the page's choices (None: the served default)."""
        if scaling is not None and scaling not in SCALINGS:
            raise ValueError(f"no scaling {scaling!r}")
        default = self.default_view
        return View(default.types if types is None else (tuple(types) or None),
                    default.years if years is None else (tuple(years) or None),
                    scaling or default.scaling)

    def start_zoom(self, window: tuple[int, int] = (1280, 800)) -> int | None:
        """The zoom at which the page first shows the default view's extent in a window of
        this size (as Leaflet's fitBounds picks it), or None with nothing to draw."""
        area = self.selection(self.default_view).area
        if area is None:
            return None
        for zoom in range(tiles.MAX_ZOOM, -1, -1):
            res = tiles.resolution(zoom)
            if (area.right - area.left) / res <= window[0] and \
                    (area.top - area.bottom) / res <= window[1]:
                return zoom
        return 0

    def warm(self) -> None:
        """Make ahead the levels a page opens at (its start zoom, then one in, one out), so
        the first tiles need not wait for them; and import the blur's scipy meanwhile."""
        import scipy.ndimage  # noqa: F401 - 0.25 s, else paid by the first tile

        start = self.start_zoom()
        if start is None:
            return
        for zoom in (start, start + 1, start - 1):
            if 0 <= zoom <= tiles.MAX_ZOOM:
                self.level(zoom, self.default_view)

    def legend(self, zoom: int, view: View | None = None) -> list[tuple[float, int]]:
        """The level's legend, as the build's key and QGIS style give it: (heat, count)
        pairs (none under --normalize local, whose key says fewer/more)."""
        return list(self.level(zoom, view or self.default_view).ticks)

    def lit_tiles(self, zoom: int, view: View | None = None) -> list[TileKey]:
        """The tiles of a level that hold heat."""
        return sorted(self.level(zoom, view or self.default_view).index)

    def bounds_lonlat(self, view: View | None = None) -> tuple[float, float, float, float] | None:
        """The view's extent as west, south, east, north degrees (None: nothing drawn)."""
        from .projection import unproject

        area = self.selection(view or self.default_view).area
        if area is None:
            return None
        corners = unproject(np.array([[area.left, area.bottom], [area.right, area.top]]))
        return tuple(float(v) for v in corners.ravel())


def _privacy(options: BuildOptions, parsed):
    """The build's privacy.Privacy (auto zones from the activities a build with these
    options draws, the same whatever view the page asks for); None without it."""
    if not options.privacy_asked:
        return None
    from .privacy import of_build

    kept, _ = select_activities(parsed, options.years, options.types, options.keep_duplicates)
    return of_build(options, [a.summary for a in kept])


def _hidden(activity: ParsedFile, keep: np.ndarray, privacy, mode: str):
    """What an activity's points inside the box draw under privacy, as
    rasterize.count_activity has it: (the points kept, in points mode without the hidden
    ones; each point's privacy.end_distances, or None where no ends are hidden)."""
    if privacy is None:
        return keep, None
    from .privacy import end_distances, hidden_points
    from .rasterize import split_gaps

    segments = activity.offsets
    if mode == "lines":
        segments = split_gaps(activity.xy, activity.offsets, activity.times)
    ends = end_distances(activity.xy, segments) if privacy.hide_ends > 0 else None
    if mode != "lines":
        keep = keep & ~hidden_points(activity.xy, ends, privacy)
    return keep, ends


def _selection_bytes(chosen: Selection) -> int:
    return sum(part.nbytes for part in chosen if isinstance(part, np.ndarray)) + 512


def colour_index(index: np.ndarray, cmap: str) -> np.ndarray:
    """Colormap indices as (4, h, w) RGBA: colour.shade_rgba's lookup, on lut_index's output."""
    if cmap not in COLORMAP_NAMES:
        raise ValueError(f"no colormap {cmap!r}")
    table = _rgba_lut(cmap)
    rgba = np.empty((4, *index.shape), dtype=np.uint8)
    for band in range(4):
        np.take(table[:, band], index, out=rgba[band])
    return rgba


_RGBA_LUTS: dict = {}


def _rgba_lut(cmap: str) -> np.ndarray:
    table = _RGBA_LUTS.get(cmap)
    if table is None:
        table = _RGBA_LUTS[cmap] = with_alpha(lut(cmap))
    return table
