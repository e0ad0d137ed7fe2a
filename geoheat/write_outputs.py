"""The write stage: every output of a build, by the table of output kinds (output_kinds).

The zooms the outputs need (pyramid_zooms below the output's, zooms_above it), then the
files written: each FILE kind, the COGs with their overviews, the tile archives (and
the tiles build --site keeps, a TileSet) with their levels. The pyramid's levels are
made one at a time (each from its own zoom's counts); the overviews wait in a folder
inside the staging folder, removed before the commit.
"""

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import tiles
from .colormaps import css_stops, lut, with_alpha
from .colour import shade_rgba
from .level import level_scale
from .output_kinds import ARCHIVE, COG, FILE, OVERVIEWS, TILES, kinds_in
from .projection import lonlat_bounds, unproject
from .pyramid import Level, overview_count, zooms_below
from .report import geotiff_tags, mbtiles_metadata
from .tiles import Grid
from .tilewriters import visible_tiles
from .writers import write_overview, written_files


class TileSet(NamedTuple):
    """The heat tiles a build made, as its MBTiles hold them (build --site writes them)."""

    pngs: dict  # tiles.Tile -> PNG bytes, the tiles with heat, min_zoom..max_zoom
    min_zoom: int
    max_zoom: int
    metadata: dict  # the MBTiles' metadata rows (geoheat_legend: the page's legend)


class Deferred:
    """A value made on first call (the output zoom's heat: a rebuild whose GeoTIFFs come
    from the output cache, and with no picture, never makes it)."""

    def __init__(self, make: Callable[[], object]):
        self._make = make
        self._value = None
        self.made = False

    def __call__(self):
        if not self.made:
            self._value = self._make()
            self.made = True
        return self._value


class Coloured(Mapping):
    """Sparse heat's tiles as RGBA blocks, each shaded when read: a level's RGBA is never
    held whole (at street zoom, 256 KiB a tile with heat)."""

    def __init__(self, heat: Mapping, rgba_lut: np.ndarray):
        self._heat, self._lut = heat, rgba_lut

    def __getitem__(self, key) -> np.ndarray:
        return shade_rgba(self._heat[key], self._lut)

    def __iter__(self):
        return iter(self._heat)

    def __len__(self) -> int:
        return len(self._heat)


class Made(NamedTuple):
    """What the output kinds' writers draw from (output_kinds: OutputKind.write)."""

    options: object  # BuildOptions
    grid: Grid
    counts: dict
    heat_of: Callable[[], dict]  # the output zoom's heat, made on first call
    picture: np.ndarray | None
    rgba_lut: np.ndarray
    tags: dict
    coloured: Callable[[Mapping], Mapping]  # sparse heat -> sparse RGBA blocks (Coloured)
    top: Level | None = None  # the output's own zoom, as a pyramid level
    pngs: dict | None = None  # the tile archives' tiles
    lonlat: tuple | None = None  # the tiles' lon/lat bounds
    centre: tuple | None = None  # the tiles' centre (lon, lat) and the zoom a viewer opens

    @property
    def heat(self) -> dict:
        return self.heat_of()


def pyramid_zooms(options, grid: Grid, min_zoom: int, keep_tiles: bool = False,
                  overviews: bool = True) -> range:
    """The zooms below the output's that its outputs need: the GeoTIFFs' overviews (down
    to one 256-pixel block; overviews=False: none, the GeoTIFFs are made) and the tile
    archives' (and kept tiles') levels (down to min_zoom)."""
    cogs = overviews and bool(kinds_in(options.outputs, levels=OVERVIEWS))
    archives = keep_tiles or bool(kinds_in(options.outputs, levels=TILES))
    lowest = min([grid.zoom - (overview_count(grid) if cogs else 0)]
                 + ([min_zoom] if archives else []))
    return zooms_below(grid, lowest)


def zooms_above(options, grid: Grid, max_zoom: int, keep_tiles: bool = False) -> range:
    """The zooms above the output's that the tile archives (and kept tiles) need (up to
    max_zoom)."""
    if not keep_tiles and not kinds_in(options.outputs, levels=TILES):
        return range(0)
    return range(grid.zoom + 1, max_zoom + 1)


def fitting_zoom(bounds, lowest: int, highest: int, window=(1280, 800)) -> int:
    """The highest zoom (within lowest..highest) at which bounds (EPSG:3857) fit a window
    of this many pixels: where a viewer opens the tiles and sees all the heat."""
    for zoom in range(highest, lowest - 1, -1):
        res = tiles.resolution(zoom)
        if (bounds.right - bounds.left) / res <= window[0] and \
                (bounds.top - bounds.bottom) / res <= window[1]:
            return zoom
    return lowest


def write_outputs(options, outputs, grid, counts, heat_of, picture, result, min_zoom,
                  pyramid, plan, max_zoom=None, keep_tiles=False,
                  counts_key: dict | None = None) -> list[Path]:
    """Every output, staged in the output set (committed together by the caller); the
    paths written. heat_of(): the output zoom's heat (made on first call); pyramid(zooms,
    heat=True): the levels at those zooms, one at a time (heat=False: their counts
    alone). counts_key: the counts cache's key of
    these counts (countcache.entry_key), with which the GeoTIFFs are kept in and copied
    from the output cache (outputcache.py; None: neither). Sets result.data_tiles."""
    paths = dict(options.outputs)
    if picture is None:
        paths.pop("png", None)
    rgba_lut = with_alpha(lut(options.colormap))

    def coloured(sparse):
        return Coloured(sparse, rgba_lut)

    made = Made(options, grid, counts, heat_of, picture, rgba_lut,
                geotiff_tags(options, result), coloured)
    for kind in kinds_in(paths, FILE):
        with outputs.writing(paths[kind.name]) as temp:
            kind.write(temp, made)

    archives = kinds_in(paths, ARCHIVE)
    tiled = bool(archives) or keep_tiles
    cogs = kinds_in(paths, COG)
    overviews = overview_count(grid) if cogs else 0
    cached = _CachedCogs(options.parse_cache if counts_key is not None else None,
                         counts_key, made, plan, overviews)
    to_make = [kind for kind in cogs if not cached.copied(kind, outputs, paths[kind.name])]
    max_zoom = grid.zoom if max_zoom is None else max_zoom
    top_tiles = tiled and min_zoom <= grid.zoom <= max_zoom
    pngs = visible_tiles(coloured(made.heat), grid.zoom) if top_tiles else {}

    def ticks(level_counts, level_grid):  # the level's legend, as geoheat serve gives it
        scale = level_scale(level_counts, level_grid, options.scaling, options.normalize, plan)
        return [] if scale is None else [list(t) for t in scale.ticks]

    legends = {grid.zoom: ticks(counts, grid)} if top_tiles else {}
    folder = None
    try:
        files = {kind.name: [] for kind in to_make}
        of_heat = tiled or any(kind.from_heat for kind in to_make)  # else counts alone
        if to_make or tiled:
            first = paths[(to_make[0].name if to_make else None)
                          or ([a.name for a in archives] or list(paths))[0]]
            with outputs.writing(first) as staged:
                folder = Path(tempfile.mkdtemp(prefix=".levels-", dir=staged.parent))
                for level in pyramid(pyramid_zooms(options, grid, min_zoom, keep_tiles,
                                                   overviews=bool(to_make)), of_heat):
                    factor = grid.zoom - level.grid.zoom
                    for kind in to_make:
                        if factor <= overviews:
                            files[kind.name].append(folder / f"{kind.name}-{factor}.tif")
                            write_overview(files[kind.name][-1], kind.blocks(level, made),
                                           grid, level.grid, count=kind.bands,
                                           dtype=kind.dtype, nodata=kind.nodata)
                    if tiled and min_zoom <= level.grid.zoom <= max_zoom:
                        pngs.update(visible_tiles(coloured(level.heat), level.grid.zoom))
                        legends[level.grid.zoom] = ticks(level.counts, level.grid)
                # The levels above the output's, to street zoom: each from its own counts.
                for level in pyramid(zooms_above(options, grid, max_zoom, keep_tiles)):
                    pngs.update(visible_tiles(coloured(level.heat), level.grid.zoom))
                    legends[level.grid.zoom] = ticks(level.counts, level.grid)
        # The output's own zoom (its heat only if a GeoTIFF made here is of the heat)
        made = made._replace(top=Level(grid, counts, made.heat if of_heat else None))
        for kind in to_make:
            with outputs.writing(paths[kind.name]) as temp:
                kind.write(temp, made, kind, files[kind.name])
                cached.keep(kind, temp, heat_of)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    cached.prune()
    result.data_tiles = len(heat_of()) if heat_of.made or cached.data_tiles is None \
        else cached.data_tiles
    if tiled:
        _write_tiles(options, outputs, paths, made, archives, pngs, legends, result,
                     min_zoom, max_zoom, keep_tiles)
    return written_files(paths.values(), lambda path: outputs.temp(path).exists())


class _CachedCogs:
    """This build's GeoTIFFs in the output cache (outputcache.py): copied from it when
    their key matches, kept in it when made. cache_dir None: no cache."""

    def __init__(self, cache_dir, counts_key, made: Made, plan, overviews: int):
        self.cache_dir = cache_dir
        self.data_tiles = None  # tiles with heat, as the heat GeoTIFF's entry says
        self._kept = set()
        if cache_dir is None:
            return
        options, grid = made.options, made.grid
        self._counts_key = counts_key
        self._made = {
            "grid": [grid.zoom, grid.col_off, grid.row_off, grid.width, grid.height],
            "overviews": overviews, "sigma": options.sigma, "scaling": options.scaling,
            "normalize": options.normalize, "plan": [float(v) for v in plan],
            "tags": json.loads(json.dumps(made.tags, default=str)),
        }
        self._colours = hashlib.sha256(np.ascontiguousarray(made.rgba_lut).tobytes()).hexdigest()

    def _key(self, kind) -> dict:
        from .outputcache import entry_key

        colours = {"colours": self._colours} if kind.coloured else {}
        return entry_key(self._counts_key, kind.name, {**self._made, **colours})

    def copied(self, kind, outputs, path: Path) -> bool:
        """Whether kind's file was copied from the cache into the output set."""
        if self.cache_dir is None:
            return False
        from .outputcache import entry_path, load

        key = self._key(kind)
        found = load(self.cache_dir, key)
        if found is None:
            return False
        body, meta = found
        with outputs.writing(path) as temp:
            temp.write_bytes(body)
        self._kept.add(entry_path(self.cache_dir, key))
        if kind.from_heat and isinstance(meta.get("data_tiles"), int):
            self.data_tiles = meta["data_tiles"]
        return True

    def keep(self, kind, written: Path, heat_of) -> None:
        """Keep kind's file, just written, in the cache."""
        if self.cache_dir is None:
            return
        from .outputcache import store

        meta = {"data_tiles": len(heat_of())} if kind.from_heat else {}
        stored = store(self.cache_dir, self._key(kind), written, meta)
        if stored is not None:
            self._kept.add(stored)

    def prune(self) -> None:
        if self.cache_dir is not None and self._kept:
            from .outputcache import keep_recent

            keep_recent(self.cache_dir, self._kept)


def _write_tiles(options, outputs, paths, made, archives, pngs, legends, result, min_zoom,
                 max_zoom, keep_tiles) -> None:
    """The tile archives (and the kept TileSet, in result.tiles) of the tiles made, with
    the metadata and the page's legend, level by level."""
    bounds = tiles.grid_bounds(made.grid)
    lonlat = lonlat_bounds(bounds)
    centre = unproject(np.array([[(bounds.left + bounds.right) / 2,
                                  (bounds.bottom + bounds.top) / 2]]))[0]
    view = fitting_zoom(bounds, min_zoom, max_zoom)
    # The page (geoheat serve FILE) draws its legend from this, level by level.
    legend = {"legend": {str(z): ticks for z, ticks in sorted(legends.items())},
              "unit": "passes" if options.mode == "lines" else "track points",
              "local": options.normalize == "local",
              "ramps": {options.colormap: css_stops(options.colormap)},
              "view": {"cmap": options.colormap}}
    if keep_tiles:
        metadata = mbtiles_metadata(Path(options.output).with_suffix(".mbtiles"),
                                    tuple(centre), min_zoom, result, options, lonlat, view)
        metadata["maxzoom"] = str(max_zoom)
        metadata["geoheat_legend"] = json.dumps(legend)
        result.tiles = TileSet(pngs, min_zoom, max_zoom, metadata)
    made = made._replace(pngs=pngs, lonlat=lonlat,
                         centre=(float(centre[0]), float(centre[1]), view))
    for kind in archives:
        metadata = mbtiles_metadata(paths[kind.name], tuple(centre), min_zoom, result, options,
                                    lonlat, view)
        metadata["maxzoom"] = str(max_zoom)
        metadata["geoheat_legend"] = json.dumps(legend)
        with outputs.writing(paths[kind.name]) as temp:
            kind.write(temp, made, metadata)
