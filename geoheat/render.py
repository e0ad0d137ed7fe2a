"""Heat tiles on request, at any zoom, the same as a build's: the renderer `geoheat serve`
uses (build --site writes the build's own tiles).

A tile is made by the build's functions (geoheat.level): the counts of the activities
that touch it (each activity's bounding box, then the steps that reach the tile and
the blur's halo: level.count_region), scaled by the level's Scale (its count
distribution, from the level's lit tiles or, when the level is large, a fixed sample
of them: level.modulus) or by local contrast (the counts ~2 km around), blurred,
looked up in the colormap (colour.shade_rgba's table) and PNG-encoded
(tilewriters.png_tile): byte-equal to the build's MBTiles tile, privacy too (the build's
zones and hidden ends: points mode drops the hidden points, lines hide their samples,
as rasterize.count_activity). The points a view draws are chosen and indexed by
geoheat.viewselection; tiles are made a metatile at a time by geoheat.metatiles (one
count and blur for the tiles a page shows together) and kept as colormap indices,
deflated.

Selections (the points of a filter), levels' scales, metatiles and encoded tiles are
kept in LRU caches bounded in bytes (geoheat.bytecache), shared by every view that
agrees on what they depend on. Everything here is safe to call from several threads:
each is made once, by the first thread that asks for it, while the others wait for it.
"""

import hashlib
import json
from collections.abc import Callable, Sequence

import numpy as np

from . import tiles
from .activities import select_activities
from .bytecache import BytesLRU, MadeOnce
from .cache import ParsedFile
from .colormaps import COLORMAP_NAMES, lut, with_alpha
from .heat import kernel_radius
from .metatiles import (Level, counts_bytes, level_scale, metatile_heat, metatile_region,
                        metatile_side, metatiles_near_tracks, scale_bytes)
from .options import NORMALIZES, SCALINGS, BuildOptions
from .tiles import Grid, TileKey
from .viewselection import Selection, View, select_view, selection_bytes
from .tilewriters import png_tile

SIZE = tiles.TILE_SIZE
# Default cache bounds: the metatiles' heat (deflated colormap indices, a few KiB a lit
# tile), the encoded PNGs and the selections' points.
LEVEL_CACHE_BYTES = 128 * 2**20
TILE_CACHE_BYTES = 64 * 2**20
SELECTION_CACHE_BYTES = 256 * 2**20  # the points of the filters asked for last
COUNTS_CACHE_BYTES = 320 * 2**20  # small levels' counts (metatiles.WHOLE_TILES bounds one)
encode_png = png_tile  # the one PNG encoder (tilewriters.png_tile)

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
        self.scales = BytesLRU(16 * 2**20, scale_bytes, keep_oversize=True)
        # The counts of small levels (counted whole for their scale): their tiles are cut
        # from these instead of counted again.
        self.counts = BytesLRU(COUNTS_CACHE_BYTES, counts_bytes)
        self.pngs = BytesLRU(tile_cache_bytes)
        # The points of the last filters asked for (2 million points: ~40 MB each).
        self.selections = BytesLRU(selection_cache_bytes, selection_bytes, keep_oversize=True)
        self.made_once = MadeOnce()
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

    def selection(self, view: View) -> Selection:
        """The points the view draws: the build's select and extent stages."""
        return self.made_once.get(self.selections, (view.types, view.years),
                                  lambda: select_view(self.parsed, self.options, self.privacy,
                                                      view))

    def grid(self, zoom: int, view: View) -> Grid | None:
        """The level's grid: the whole tiles covering the view's extent (as the build's)."""
        area = self.selection(view).area
        return None if area is None else tiles.grid_covering(area, zoom)

    def scale(self, zoom: int, view: View):
        """The level's Scale (level.make_scale over its lit tiles, or a fixed sample of
        them when it is large, as the build ranks it); None under local contrast."""
        if view.normalize == "local":
            return None
        return self.made_once.get(self.scales, (zoom, view.types, view.years, view.scaling),
                                  lambda: self._scale(zoom, view))

    def _scale(self, zoom: int, view: View):
        chosen = self.selection(view)
        grid = self.grid(zoom, view)
        return level_scale(chosen, grid, zoom, view.scaling, self.options.mode, self._shield,
                           lambda counts: self.counts.put((zoom, view.types, view.years),
                                                          counts))

    def metatile(self, zoom: int, mx: int, my: int, view: View) -> Level:
        """The heat of the side x side tiles from (mx, my) x side (side: metatile_side)."""
        key = (zoom, mx, my, view.types, view.years,
               "local" if view.normalize == "local" else view.scaling)
        return self.made_once.get(self.levels, key,
                                  lambda: self._metatile(zoom, mx, my, view))

    def _metatile(self, zoom: int, mx: int, my: int, view: View) -> Level:
        chosen = self.selection(view)
        grid = self.grid(zoom, view)
        if grid is None:
            return Level(zoom, None, {})
        region = metatile_region(grid, mx, my, metatile_side(view))
        if region is None:
            return Level(zoom, grid, {})
        scale = self.scale(zoom, view)
        return metatile_heat(chosen, grid, zoom, region, scale, self.options.sigma,
                             self.options.mode, self._shield,
                             self.counts.get((zoom, view.types, view.years)))

    def level(self, zoom: int, view: View) -> Level:
        """The whole level (every lit tile), as the build makes it: for tests and
        benchmarks; a page asks for tiles."""
        grid = self.grid(zoom, view)
        index = {}
        for mx, my in metatiles_near_tracks(self.selection(view), zoom, metatile_side(view),
                                            self.options.mode):
            index.update(self.metatile(zoom, mx, my, view).index)
        scale = self.scale(zoom, view) if grid is not None else None
        return Level(zoom, grid, index, ticks=() if scale is None else scale.ticks)

    def once_json(self, name: str, make: Callable) -> bytes:
        """make()'s JSON, made once (threads asking meanwhile wait for the first)."""
        with self.made_once.lock(("json", name)):
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
    """The build's privacy.Privacy (build_privacy.privacy_of: auto zones from the
    activities a build with these options draws, the same whatever view the page asks
    for); None without it."""
    if not options.privacy_asked:
        return None
    from .build_privacy import privacy_of

    kept, _ = select_activities(parsed, options.years, options.types, options.keep_duplicates)
    return privacy_of(options, kept)


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
