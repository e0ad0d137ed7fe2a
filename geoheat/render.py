"""Heat tiles on request, at any zoom, the same as a build's: the renderer `geoheat serve`
uses (build --site writes the build's own tiles).

A tile is made by the build's functions (geoheat.level): the counts of the activities
that touch it (each activity's bounding box, then the steps that reach the tile and
the blur's halo: level.count_region), scaled by the level's Scale (its count
distribution, from the level's lit tiles or, when the level is large, a fixed sample
of them: level.modulus) or by local contrast (the counts ~2 km around), blurred,
looked up in the colormap (colour.shade_rgba's table) and PNG-encoded
(writers.png_tile): byte-equal to the build's MBTiles tile, privacy too (the build's
zones and hidden ends: points mode drops the hidden points, lines hide their samples,
as rasterize.count_activity). Tiles are made
METATILE x METATILE at a time (one count and blur for the tiles a page shows
together; under local contrast LOCAL_METATILE, whose counts reach ~2 km around) and
kept as colormap indices, deflated.

Selections (the points of a filter), levels' scales, metatiles and encoded tiles are
kept in LRU caches bounded in bytes, shared by every view that agrees on what they
depend on. Everything here is safe to call from several threads: each is made once,
by the first thread that asks for it, while the others wait for it. Memory freed
after a burst of work is given back to the system (malloc_trim, where glibc).
"""

import hashlib
import json
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
from .extent import choose_area
from .heat import kernel_radius
from .level import (Plan, count_region, level_heat, make_scale, modulus, most_tiles, plan_of,
                    sample_of, sampled)
from .options import NORMALIZES, SCALINGS, BuildOptions
from .rasterize import cut_to_box, select_points
from .tiles import Bbox, Grid, TileKey
from .writers import png_tile

SIZE = tiles.TILE_SIZE
# Default cache bounds: the metatiles' heat (deflated colormap indices, a few KiB a lit
# tile), the encoded PNGs and the selections' points.
LEVEL_CACHE_BYTES = 128 * 2**20
TILE_CACHE_BYTES = 64 * 2**20
SELECTION_CACHE_BYTES = 256 * 2**20  # the points of the filters asked for last
COUNTS_CACHE_BYTES = 320 * 2**20  # small levels' counts (WHOLE_TILES bounds one)
# A level that may light up to this many tiles (~256 MB of counts) is counted whole, once,
# and its tiles cut from the counts; a larger one is counted tile by tile, as asked.
WHOLE_TILES = 1024
# Tiles made together: one count and blur for the METATILE x METATILE tiles around.
METATILE = 2
# Under local contrast a tile's counts reach 2 blocks (~1.3 km) around it: more tiles
# share that count.
LOCAL_METATILE = 8
# The points are indexed by their tile at this zoom (~300 m at 30 degrees): a tile's
# count reads the points of its cells and the cells next to them.
INDEX_ZOOM = 17
encode_png = png_tile  # the one PNG encoder (writers.png_tile)


class View(NamedTuple):
    """What the page can change without re-reading: which activities, and how heat is
    scaled. types/years None: all."""

    types: tuple[str, ...] | None
    years: tuple[int, ...] | None
    scaling: str
    normalize: str = "global"


class Selection(NamedTuple):
    """The points a view draws (as a build with its filters would), with the index."""

    xy: np.ndarray
    segments: np.ndarray  # segment offsets into xy, split at gaps (lines mode)
    area: Bbox | None  # the extent (None: nothing to draw)
    activity_offsets: np.ndarray  # activity i's points: xy[a[i]:a[i + 1]]
    boxes: np.ndarray  # (activities, 4) left, bottom, right, top of each activity's points
    plan: Plan | None  # what a level's sample size is estimated from
    cells: np.ndarray  # the points' INDEX_ZOOM tiles (y * 2**INDEX_ZOOM + x), sorted
    order: np.ndarray  # the points in that order
    long_steps: np.ndarray  # both ends of each step spanning more than a cell's neighbours
    ends: np.ndarray | None = None  # with hidden ends: privacy.end_distances of each point


EMPTY_SELECTION = Selection(np.empty((0, 2)), np.zeros(1, np.int64), None,
                            np.zeros(1, np.int64), np.empty((0, 4)), None,
                            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass
class Level:
    """Heat of one zoom for one view: the grid and the lit tiles' colormap indices made
    so far (a metatile's, or with lit_tiles the whole level's)."""

    zoom: int
    grid: Grid | None
    index: dict[TileKey, bytes]  # zlib of each (256, 256) uint8 colour.lut_index(heat)
    problem: str | None = None
    ticks: tuple = ()  # its legend: (heat, count) pairs (local: none)

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


EMPTY_PNG = png_tile(np.zeros((4, SIZE, SIZE), dtype=np.uint8), 9)


def valid_tile(z: int, x: int, y: int) -> bool:
    """Whether z/x/y names a tile of the XYZ pyramid (zoom 0-19)."""
    return 0 <= z <= tiles.MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


class Renderer:
    """Heat tiles of parsed activity files, drawn with a build's settings.

    options: the build's settings (mode, sigma, extent, bounds, keep_duplicates, and the
    default view: types, years, scaling, normalize, colormap). parsed:
    reading.read_files' result.
    """

    def __init__(self, options: BuildOptions, parsed: Sequence[ParsedFile],
                 level_cache_bytes: int = LEVEL_CACHE_BYTES,
                 tile_cache_bytes: int = TILE_CACHE_BYTES,
                 selection_cache_bytes: int = SELECTION_CACHE_BYTES, on_warning=None):
        self.options = options
        self.parsed = list(parsed)
        self.default_view = View(options.types, options.years, options.scaling,
                                 options.normalize)
        self.default_cmap = options.colormap
        self.levels = BytesLRU(level_cache_bytes, lambda level: level.nbytes, keep_oversize=True)
        self.scales = BytesLRU(16 * 2**20, _scale_bytes, keep_oversize=True)
        # The counts of small levels (counted whole for their scale): their tiles are cut
        # from these instead of counted again.
        self.counts = BytesLRU(COUNTS_CACHE_BYTES, _counts_bytes)
        self.pngs = BytesLRU(tile_cache_bytes)
        # The points of the last filters asked for (2 million points: ~40 MB each).
        self.selections = BytesLRU(selection_cache_bytes, _selection_bytes, keep_oversize=True)
        self._locks: dict = {}
        self._locks_lock = threading.Lock()
        self._json: dict[str, bytes] = {}
        self.warn = on_warning or (lambda message: None)
        drawable = [p for p in self.parsed if p.error is None and p.points]
        self.types = sorted({p.activity_type for p in drawable if p.activity_type})
        self.years = sorted({p.start.year for p in drawable if p.start is not None})
        self.privacy = _privacy(options, self.parsed)
        # What the lines' counts hide (privacy.SampleFilter; points mode drops the points).
        self._shield = (self.privacy if self.privacy is not None and self.privacy.active
                        and options.mode == "lines" else None)
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
        # Each activity's points inside the box, as the build cuts them (count_activity).
        parts, boxes = [], np.full((len(kept), 4), np.nan)
        ends = []
        for i, activity in enumerate(kept):
            xy, segments, activity_ends = _cut(activity, box, options.mode, self.privacy)
            parts.append((xy, segments))
            if activity_ends is not None:
                ends.append(activity_ends)
            if len(xy):
                boxes[i] = xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()
        if not any(len(xy) for xy, _ in parts):  # no point inside --bounds
            return EMPTY_SELECTION
        starts = np.cumsum([0] + [len(xy) for xy, _ in parts])
        segments = np.concatenate([o[:-1] + s for (_, o), s in zip(parts, starts)]
                                  + [[starts[-1]]]).astype(np.int64)
        xy = np.concatenate([p[0] for p in parts])
        return Selection(xy, segments, area, starts.astype(np.int64), boxes,
                         plan_of([a.summary for a in kept], area), *point_index(xy, segments),
                         np.concatenate(ends) if ends else None)

    def grid(self, zoom: int, view: View) -> Grid | None:
        """The level's grid: the whole tiles covering the view's extent (as the build's)."""
        area = self.selection(view).area
        return None if area is None else tiles.grid_covering(area, zoom)

    def scale(self, zoom: int, view: View):
        """The level's Scale (level.make_scale over its lit tiles, or a fixed sample of
        them when it is large, as the build ranks it); None under local contrast."""
        if view.normalize == "local":
            return None
        return self._once(self.scales, (zoom, view.types, view.years, view.scaling),
                          lambda: self._scale(zoom, view))

    def _scale(self, zoom: int, view: View):
        chosen = self.selection(view)
        grid = self.grid(zoom, view)
        m = modulus(chosen.plan, zoom)
        if most_tiles(chosen.plan, zoom) <= WHOLE_TILES:  # counted whole: tiles cut from it
            counts = count_region(chosen.xy, chosen.segments, self.options.mode, grid,
                                  lambda tx, ty: np.ones(len(tx), dtype=bool),
                                  self._shield, chosen.ends)
            self.counts.put((zoom, view.types, view.years), counts)
            scale = make_scale(sample_of(counts, m), view.scaling)
        else:
            scale = make_scale(count_region(chosen.xy, chosen.segments, self.options.mode,
                                            grid, lambda tx, ty: sampled(tx, ty, m),
                                            self._shield, chosen.ends),
                               view.scaling)
        give_back_memory()
        return scale

    def metatile(self, zoom: int, mx: int, my: int, view: View) -> Level:
        """The heat of the side x side tiles from (mx, my) x side (side: metatile_side)."""
        key = (zoom, mx, my, view.types, view.years,
               "local" if view.normalize == "local" else view.scaling)
        return self._once(self.levels, key, lambda: self._metatile(zoom, mx, my, view))

    def _metatile(self, zoom: int, mx: int, my: int, view: View) -> Level:
        chosen = self.selection(view)
        grid = self.grid(zoom, view)
        if grid is None:
            return Level(zoom, None, {})
        gx0, gy0 = grid.col_off // SIZE, grid.row_off // SIZE
        gx1, gy1 = gx0 + grid.width // SIZE, gy0 + grid.height // SIZE
        side = metatile_side(view)
        x0, y0 = max(mx * side, gx0), max(my * side, gy0)
        x1, y1 = min(mx * side + side, gx1), min(my * side + side, gy1)
        if x0 >= x1 or y0 >= y1:
            return Level(zoom, grid, {})
        scale = self.scale(zoom, view)
        sigma = self.options.sigma
        reach = -(-kernel_radius(sigma) // SIZE) if sigma else 0
        # The tiles whose counts the heat needs: the blur's halo, and under local contrast
        # the neighbourhoods of its blocks (2 blocks on each side, see contrast.py).
        cx0, cy0, cx1, cy1 = x0 - reach, y0 - reach, x1 + reach, y1 + reach
        if scale is None:
            from .contrast import block_pixels

            side = block_pixels(grid)
            cx0 = (cx0 * SIZE // side - 2) * side // SIZE
            cy0 = (cy0 * SIZE // side - 2) * side // SIZE
            cx1 = -(-((cx1 * SIZE - 1) // side + 3) * side // SIZE)
            cy1 = -(-((cy1 * SIZE - 1) // side + 3) * side // SIZE)
        res = tiles.resolution(zoom) * SIZE
        box = Bbox(cx0 * res - tiles.ORIGIN_SHIFT, tiles.ORIGIN_SHIFT - cy1 * res,
                   cx1 * res - tiles.ORIGIN_SHIFT, tiles.ORIGIN_SHIFT - cy0 * res)
        whole = self.counts.get((zoom, view.types, view.years))
        if whole is not None:
            counts = {(x, y): block for (x, y), block in whole.items()
                      if cx0 <= x < cx1 and cy0 <= y < cy1}
        else:
            xy, segments, ends = self._near(chosen, zoom, (cx0, cy0, cx1, cy1), box)
            counts = count_region(xy, segments, self.options.mode, grid,
                                  lambda tx, ty: (tx >= cx0) & (tx < cx1) & (ty >= cy0)
                                  & (ty < cy1), self._shield, ends)
        only = {(x, y) for x in range(x0, x1) for y in range(y0, y1)}
        heat = level_heat(counts, grid, scale, sigma, only=only)
        if len(counts) > 64:  # a big region's temporaries (local contrast): give them back
            del counts
            give_back_memory()
        index = {}
        for key, block in heat.items():
            block = lut_index(block)
            if block.any():  # mostly zeros: ~20x smaller deflated, ~0.1 ms to inflate
                index[key] = zlib.compress(block.tobytes(), 1)
        return Level(zoom, grid, index, ticks=() if scale is None else scale.ticks)

    def level(self, zoom: int, view: View) -> Level:
        """The whole level (every lit tile), as the build makes it: for tests and
        benchmarks; a page asks for tiles."""
        grid = self.grid(zoom, view)
        index = {}
        for mx, my in self._metatiles_near_tracks(zoom, view):
            index.update(self.metatile(zoom, mx, my, view).index)
        scale = self.scale(zoom, view) if grid is not None else None
        return Level(zoom, grid, index, ticks=() if scale is None else scale.ticks)

    def _metatiles_near_tracks(self, zoom: int, view: View) -> list[tuple[int, int]]:
        chosen = self.selection(view)
        if chosen.area is None:
            return []
        from .level import point_tiles

        # Lines between points may cross tiles without a point: their boxes' tiles too.
        tx, ty = point_tiles(chosen.xy, zoom)
        side = metatile_side(view)
        mx, my = tx // side, ty // side
        found = set(zip(mx.tolist(), my.tolist()))
        if self.options.mode == "lines" and len(tx) > 1:
            jump = (np.abs(np.diff(tx)) > 0) | (np.abs(np.diff(ty)) > 0)
            for i in np.flatnonzero(jump):
                for x in range(min(tx[i], tx[i + 1]) // side,
                               max(tx[i], tx[i + 1]) // side + 1):
                    for y in range(min(ty[i], ty[i + 1]) // side,
                                   max(ty[i], ty[i + 1]) // side + 1):
                        found.add((x, y))
        return sorted({(x + dx, y + dy) for x, y in found for dx in (-1, 0, 1)
                       for dy in (-1, 0, 1)})

    @staticmethod
    def _near(chosen: Selection, zoom: int, region, box: Bbox):
        """The points of the steps that can reach the tiles region (x0, y0, x1, y1 at
        zoom; box: its bounds), with their segment offsets: the points in and next to
        the region's cells of the point index, and the long steps' ends; and their
        privacy.end_distances, as _crossing)."""
        x0, y0, x1, y1 = region
        if zoom >= INDEX_ZOOM:
            shift = zoom - INDEX_ZOOM
            c0, r0, c1, r1 = x0 >> shift, y0 >> shift, (x1 - 1) >> shift, (y1 - 1) >> shift
        else:
            shift = INDEX_ZOOM - zoom
            c0, r0, c1, r1 = x0 << shift, y0 << shift, (x1 << shift) - 1, (y1 << shift) - 1
        c0, r0, c1, r1 = c0 - 1, r0 - 1, c1 + 1, r1 + 1  # a step reaches one cell over
        if r1 - r0 > 4096:  # a low zoom: the activities' boxes are index enough
            return Renderer._crossing(chosen, box)
        across = 2**INDEX_ZOOM
        rows = np.arange(max(r0, 0), min(r1, across - 1) + 1, dtype=np.int64) * across
        lo = np.searchsorted(chosen.cells, rows + max(c0, 0))
        hi = np.searchsorted(chosen.cells, rows + min(c1, across - 1), side="right")
        found = [chosen.order[a:b] for a, b in zip(lo, hi) if b > a]
        n = len(chosen.xy)
        take = np.zeros(n, dtype=bool)
        take[chosen.long_steps] = True
        if found:
            near = np.concatenate(found)
            take[near] = True
            take[np.maximum(near - 1, 0)] = True  # the steps into and out of the region
            take[np.minimum(near + 1, n - 1)] = True
        if take.all():
            return chosen.xy, chosen.segments, chosen.ends
        return _taken(chosen, take)

    @staticmethod
    def _crossing(chosen: Selection, box: Bbox):
        """The points of the activities whose bounding box meets box (with their segment
        offsets and privacy.end_distances): what a count over box needs, no more."""
        boxes = chosen.boxes
        meets = ((boxes[:, 0] <= box.right) & (boxes[:, 2] >= box.left)
                 & (boxes[:, 1] <= box.top) & (boxes[:, 3] >= box.bottom))
        if meets.all():
            return chosen.xy, chosen.segments, chosen.ends
        starts, ends = chosen.activity_offsets[:-1][meets], chosen.activity_offsets[1:][meets]
        take = np.zeros(len(chosen.xy), dtype=bool)
        for a, b in zip(starts, ends):
            take[a:b] = True
        return _taken(chosen, take)

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
        side = metatile_side(view)
        return self.metatile(z, x // side, y // side, view).block((x, y))

    def rgba_tile(self, z: int, x: int, y: int, view: View | None = None,
                  cmap: str | None = None) -> np.ndarray | None:
        """Tile z/x/y as (4, 256, 256) RGBA, as the build's MBTiles hold it, or None."""
        index = self.index_tile(z, x, y, view or self.default_view)
        if index is None:
            return None
        return colour_index(index, cmap or self.default_cmap)

    def png_tile(self, z: int, x: int, y: int, view: View | None = None,
                 cmap: str | None = None) -> bytes:
        """Tile z/x/y as PNG bytes: the build's MBTiles tile (a transparent tile where
        there is no heat)."""
        view, cmap = view or self.default_view, cmap or self.default_cmap
        key = (z, x, y, view, cmap)
        data = self.pngs.get(key)
        if data is None:
            rgba = self.rgba_tile(z, x, y, view, cmap)
            data = EMPTY_PNG if rgba is None else png_tile(rgba)
            self.pngs.put(key, data)
        return data

    def etag(self, z: int, x: int, y: int, view: View, cmap: str) -> str:
        """The tile's entity tag: a hash of the data, the settings, the view and z/x/y."""
        text = repr((self.fingerprint, view, cmap, z, x, y))
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:24] + '"'

    def view(self, types=None, years=None, scaling=None, normalize=None) -> View:
        """A view from the page's choices (None: the served default)."""
        if scaling is not None and scaling not in SCALINGS:
            raise ValueError(f"no scaling {scaling!r}")
        if normalize is not None and normalize not in NORMALIZES:
            raise ValueError(f"no normalisation {normalize!r}")
        default = self.default_view
        return View(default.types if types is None else (tuple(types) or None),
                    default.years if years is None else (tuple(years) or None),
                    scaling or default.scaling, normalize or default.normalize)

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
        """Make ahead the scales of the levels a page opens at (its start zoom, one in,
        one out), so the first tiles need not wait for them; and import scipy meanwhile."""
        import scipy.ndimage  # noqa: F401 - 0.25 s, else paid by the first tile

        start = self.start_zoom()
        if start is None:
            return
        for zoom in (start, start + 1, start - 1):
            if 0 <= zoom <= tiles.MAX_ZOOM:
                self.scale(zoom, self.default_view)

    def legend(self, zoom: int, view: View | None = None) -> list[tuple[float, int]]:
        """The level's legend, as the build's tile files give it: (heat, count) pairs
        (none under --normalize local, whose key says fewer/more)."""
        scale = self.scale(zoom, view or self.default_view)
        return [] if scale is None else list(scale.ticks)

    def lit_tiles(self, zoom: int, view: View | None = None) -> list[TileKey]:
        """The tiles of a level that hold heat (makes the whole level)."""
        return sorted(self.level(zoom, view or self.default_view).index)

    def bounds_lonlat(self, view: View | None = None) -> tuple[float, float, float, float] | None:
        """The view's extent as west, south, east, north degrees (None: nothing drawn)."""
        from .projection import lonlat_bounds

        area = self.selection(view or self.default_view).area
        return None if area is None else lonlat_bounds(area)


def _privacy(options: BuildOptions, parsed):
    """The build's privacy.Privacy (auto zones from the activities a build with these
    options draws, the same whatever view the page asks for); None without it."""
    if not options.privacy_asked:
        return None
    from .privacy import of_build

    kept, _ = select_activities(parsed, options.years, options.types, options.keep_duplicates)
    return of_build(options, [a.summary for a in kept])


def _cut(activity: ParsedFile, box, mode: str, privacy):
    """An activity's points inside box as rasterize.count_activity draws them (None box:
    all): (the points, their segment offsets, split at gaps in lines mode; each point's
    privacy.end_distances where lines hide their ends, else None). Points mode drops the
    points privacy hides; lines keep them (the samples are hidden: privacy.SampleFilter)."""
    if privacy is None or not privacy.active:
        return (*cut_to_box(activity, box, mode), None)
    from .extent import inside
    from .privacy import end_distances, hidden_points
    from .rasterize import split_gaps

    xy, segments = activity.xy, activity.offsets
    keep = inside(xy, box) if box is not None else np.ones(len(xy), dtype=bool)
    if mode == "lines":  # split on the whole track, as the build (its ends are the drawn ones)
        segments = split_gaps(xy, segments, activity.times)
    ends = end_distances(xy, segments) if privacy.hide_ends > 0 else None
    if mode != "lines":
        keep = keep & ~hidden_points(xy, ends, privacy)
        ends = None
    part, segments = select_points(xy, segments, keep)
    return part, segments, None if ends is None else ends[keep]


def _taken(chosen: Selection, take: np.ndarray):
    """The selection's points marked by take: (points, segment offsets, end distances)."""
    xy, segments = select_points(chosen.xy, chosen.segments, take)
    return xy, segments, None if chosen.ends is None else chosen.ends[take]


def metatile_side(view: View) -> int:
    """How many tiles across a view's tiles are made together."""
    return LOCAL_METATILE if view.normalize == "local" else METATILE


def point_index(xy: np.ndarray, segments: np.ndarray):
    """The points' INDEX_ZOOM tiles, sorted, the points in that order, and the ends of the
    steps longer than a cell's neighbours (which a region's cells would miss)."""
    from .level import point_tiles

    tx, ty = point_tiles(xy, INDEX_ZOOM)
    cells = ty * 2**INDEX_ZOOM + tx
    order = np.argsort(cells, kind="stable")
    last = np.zeros(len(xy), dtype=bool)
    last[np.asarray(segments[1:]) - 1] = True
    far = ~last[:-1] & ((np.abs(np.diff(tx)) > 1) | (np.abs(np.diff(ty)) > 1))
    ends = np.flatnonzero(far)
    return cells[order], order, np.union1d(ends, ends + 1).astype(np.int64)


def give_back_memory() -> None:
    """Return freed heap to the system (glibc keeps it otherwise, and a burst of big
    levels would hold the server's memory at its peak)."""
    import ctypes
    import ctypes.util

    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def _counts_bytes(counts) -> int:
    return sum(block.nbytes + 100 for block in counts.values()) + 512


def _scale_bytes(scale) -> int:
    return 0 if scale is None else scale.values.nbytes * 3 + 1024

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
