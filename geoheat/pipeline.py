"""`build`: GPX files in, heatmap files out, through the steps in `heat`.

tracks -> EPSG:3857 points (parse cache) -> pixels (points or lines) -> sparse counts
-> scaled (CDF or linear) -> blurred heat -> writers.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__, font, heat, tiles
from .cache import ParsedFile
from .colormaps import COLORMAPS, STYLES, with_alpha
from .errors import InputError, OutputError, ParameterError
from .formats import activity_type
from .reading import Progress, plural, read_files
from .sources import find_sources
from .tiles import Bbox, Grid
from .tiles import DEFAULT_MAX_TILES, DEFAULT_TIMEOUT  # the basemap's, kept import-free
from .writers import (
    check_writable_folder,
    staged,
    write_csv,
    write_geotiff,
    write_mbtiles,
    write_png,
    write_qml,
    write_tiled_cog,
)

if TYPE_CHECKING:  # geoheat.basemap is imported only when a basemap is drawn
    from .basemap import BasemapReport

EXTENTS = ("auto", "all")
MODES = ("lines", "points")
HOT_RGBA = with_alpha(COLORMAPS["hot"])
# Above this many pixels no PNG is made (its RGB alone would be 200 MB); the GeoTIFF and
# MBTiles, written tile by tile, have no such limit.
MAX_PNG_PIXELS = 2**26
# The largest grid geoheat writes: GDAL reads all of it once to make the overviews.
MAX_GRID_PIXELS = 2**33


@dataclass
class BuildResult:
    """What a build read, what it left out, and what it wrote."""

    outputs: list[Path] = field(default_factory=list)
    files: int = 0  # files found
    files_read: int = 0  # files read with at least one track point
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why): unreadable...
    notes: list[str] = field(default_factory=list)  # files that broke off, partly read
    left_out: Counter = field(default_factory=Counter)  # activities left out, by reason
    duplicates: int = 0  # the same activity again (start time and place), counted once
    types: Counter = field(default_factory=Counter)  # activities drawn, by Strava type
    formats: Counter = field(default_factory=Counter)  # activities drawn, by file format
    routes: int = 0  # routes and waypoints: not activities, ignored
    waypoints: int = 0
    points_read: int = 0
    points_invalid: int = 0  # not a position on Earth (NaN, |lat| > 90, ...)
    points_outside: int = 0  # outside the extent (auto cluster or --bounds)
    points_used: int = 0
    zoom: int | None = None
    grid: Grid | None = None
    data_tiles: int = 0  # tiles of the grid with heat
    basemap: "BasemapReport | None" = None
    seconds: float = 0.0


@dataclass
class Tracks:
    """The points a build draws: (n, 2) EPSG:3857, cut into segments at offsets."""

    xy: np.ndarray
    offsets: np.ndarray


def output_paths(
    output: str | Path,
    *,
    csv: bool = False,
    rgba_tif: bool = False,
    counts: bool = False,
    mbtiles: str | Path | None = None,
) -> dict[str, Path]:
    """The files a build writes, by kind, named after the --output PNG."""
    png = Path(output)
    if png.suffix.lower() != ".png":
        raise OutputError(f"{png}: output name must end in .png (the other outputs share its stem)")
    paths = {"png": png, "tif": png.with_suffix(".tif"), "qml": png.with_suffix(".qml")}
    if csv:
        paths["csv"] = png.with_suffix(".csv")
    if rgba_tif:
        paths["rgba"] = png.with_name(f"{png.stem}-rgba.tif")
    if counts:
        paths["counts"] = png.with_name(f"{png.stem}-counts.tif")
    if mbtiles is not None:
        paths["mbtiles"] = Path(mbtiles)
        if paths["mbtiles"].suffix.lower() != ".mbtiles":
            raise OutputError(f"{mbtiles}: the MBTiles file name must end in .mbtiles")
    return paths


# Two activities starting this close in time and place are one activity twice (a .gpx
# and a .fit of one ride, or two exports unpacked into one folder).
DUPLICATE_SECONDS = 60
DUPLICATE_METRES = 200


def select_activities(
    parsed: Sequence[ParsedFile],
    years: Iterable[int] | None = None,
    on_warning: Callable[[str], None] | None = None,
    types: Iterable[str] | None = None,
) -> tuple[Tracks, BuildResult]:
    """Keep the activities of `years` and `types` (all if None), each once; count the rest."""
    warn = on_warning or (lambda message: None)
    result = BuildResult(files=len(parsed))
    years = set(years) if years else None
    types = {activity_type(t) for t in types} if types else None
    kept = []
    for activity in parsed:
        result.routes += activity.routes
        result.waypoints += activity.waypoints
        if activity.error:
            result.skipped.append((activity.name, activity.error))
            warn(f"skipped {activity.error}")
            continue
        if activity.note:
            result.notes.append(activity.note)
            warn(activity.note)
        result.files_read += 1
        result.points_read += activity.points + activity.invalid
        result.points_invalid += activity.invalid
        if years is not None:
            if activity.start is None:
                result.left_out["no time, so no year"] += 1
                continue
            if activity.start.year not in years:
                result.left_out["other years"] += 1
                continue
        if types is not None and activity.activity_type not in types:
            result.left_out["no type" if activity.activity_type is None else "other types"] += 1
            continue
        kept.append(activity)
    kept, result.duplicates = drop_duplicates(kept)
    for activity in kept:
        result.types[activity.activity_type or "unknown"] += 1
        result.formats[activity.format] += 1
    if not kept:
        return Tracks(np.empty((0, 2)), np.zeros(1, dtype=np.int64)), result
    xy = np.concatenate([a.xy for a in kept])
    starts = np.cumsum([0] + [a.points for a in kept[:-1]])
    offsets = np.concatenate([a.offsets[:-1] + s for a, s in zip(kept, starts)] + [[len(xy)]])
    return Tracks(xy, offsets.astype(np.int64)), result


def drop_duplicates(activities: Sequence[ParsedFile]) -> tuple[list[ParsedFile], int]:
    """The activities without repeats of one: same start (within a minute) and first
    point (within 200 m on the ground); of a pair, the one with more points stays."""
    timed = sorted((a for a in activities if a.start is not None),
                   key=lambda a: a.start.timestamp())
    dropped = set()
    for i, first in enumerate(timed):
        if id(first) in dropped:
            continue
        for second in timed[i + 1:]:
            if second.start.timestamp() - first.start.timestamp() > DUPLICATE_SECONDS:
                break
            if id(second) in dropped:
                continue
            gap = np.hypot(*(first.xy[0] - second.xy[0]))
            if gap / np.cosh(first.xy[0, 1] / tiles.EARTH_RADIUS) <= DUPLICATE_METRES:
                loser = second if second.points <= first.points else first
                dropped.add(id(loser))
                if loser is first:
                    break
    return [a for a in activities if id(a) not in dropped], len(dropped)


def check_zoom(zoom: int | str | None) -> int | None:
    """An OSM zoom 0-19 as int, or None for 'auto'; ParameterError otherwise."""
    if zoom is None or zoom == "auto":
        return None
    text = str(zoom).strip()
    if isinstance(zoom, bool) or not text.isdigit() or int(text) > tiles.MAX_ZOOM:
        raise ParameterError(f"zoom must be 0-{tiles.MAX_ZOOM} or 'auto', got {zoom!r}")
    return int(text)


def build(
    inputs: Iterable[str | Path] = ("gpx",),
    output: str | Path = "heatmap.png",
    *,
    zoom: int | str = "auto",
    sigma: float = 1.0,
    cdist: bool = True,
    mode: str = "lines",
    years: Iterable[int] | None = None,
    types: Iterable[str] | None = None,
    pattern: str | None = None,
    bounds: Sequence[float] | None = None,
    extent: str = "auto",
    max_size: int = 4096,
    csv: bool = False,
    rgba_tif: bool = False,
    counts: bool = False,
    mbtiles: str | Path | None = None,
    min_zoom: int | None = None,
    basemap: str | None = None,
    style: str = "hot",
    cmap: str | None = None,
    attribution: str | None = None,
    api_key: str | None = None,
    tile_cache: str | Path | None = None,
    max_tiles: int = DEFAULT_MAX_TILES,
    tile_timeout: float = DEFAULT_TIMEOUT,
    parse_cache: str | Path | None = None,
    jobs: int = 1,
    on_warning: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build a heatmap from GPX files and write its PNG, GeoTIFF and other outputs.

    inputs: activity files (GPX, FIT, TCX, plain or .gz), folders (searched with the glob
    `pattern`; None: every such file) and Strava export zips or folders (the files their
    activities.csv lists). types: Strava activity types to keep (e.g. Ride, Run; any
    sport name is understood). bounds: LAT_MIN LAT_MAX
    LON_MIN LON_MAX, which keeps the points inside and fixes the extent. extent:
    'auto' keeps the densest connected area of the tracks, 'all' every point.
    zoom: 0-19 or 'auto' (the largest that fits max_size pixels a side).
    mode: 'lines' draws each segment between consecutive points (a pixel counts the
    passes through it), 'points' counts track points.
    Always written: the PNG (with .pgw and .aux.xml), the GeoTIFF (COG) and its QGIS
    style (.qml); on request the CSV, an RGBA GeoTIFF (rgba_tif), a GeoTIFF of the
    raw counts (counts) and MBTiles from zoom down to min_zoom (default zoom - 4).
    basemap: None or 'none' (plain background), 'osm', an xyzservices provider name or
    an XYZ URL template; its tiles are fetched (cached in tile_cache) and laid under the
    PNG's heat. style ('hot', 'strava') and cmap (see colormaps.COLORMAPS) set the look.
    parse_cache: a folder keeping each file's parsed points (None: no cache);
    jobs: processes reading files in parallel (the output does not depend on it).
    Raises a GeoheatError subclass when nothing useful can be made.
    """
    started = time.perf_counter()
    fixed_zoom = check_zoom(zoom)
    heat.check_sigma(sigma)
    if max_size < tiles.TILE_SIZE:
        raise ParameterError(f"max size must be at least {tiles.TILE_SIZE} pixels, got {max_size}")
    if style not in STYLES:
        raise ParameterError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if cmap is not None and cmap not in COLORMAPS:
        raise ParameterError(f"cmap must be one of {', '.join(COLORMAPS)}, got {cmap!r}")
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"jobs must be a whole number >= 1, got {jobs!r}")
    look = STYLES[style]
    lut = COLORMAPS[cmap or look.cmap]
    rgba_lut = with_alpha(lut)
    provider = None
    if basemap is not None and basemap.lower() != "none":
        from .basemap import resolve_provider  # urllib and friends, only with a basemap

        provider = resolve_provider(basemap, api_key)
    if extent not in EXTENTS:
        raise ParameterError(f"extent must be one of {', '.join(EXTENTS)}, got {extent!r}")
    box = heat.lonlat_box_to_xy(*bounds) if bounds is not None else None
    if min_zoom is not None and check_zoom(min_zoom) is None:
        raise ParameterError("min zoom must be a number 0-19")
    outputs = output_paths(output, csv=csv, rgba_tif=rgba_tif, counts=counts, mbtiles=mbtiles)
    probes: dict[Path, Path] = {}
    for path in outputs.values():
        probes.setdefault(path.parent, path)  # one probe per folder, named by --output
    for path in probes.values():
        check_writable_folder(path)

    sources = find_sources(inputs, pattern)
    parsed = read_files(sources, Path(parse_cache) if parse_cache else None, jobs, progress)
    tracks, result = select_activities(parsed, years, on_warning, types)
    if not len(tracks.xy):
        raise InputError(f"nothing to draw: {describe_inputs(result)}")

    keep, area = select_extent(tracks.xy, box, extent)
    xy, offsets = heat.select_points(tracks.xy, tracks.offsets, keep)
    result.points_used, result.points_outside = len(xy), int((~keep).sum())
    result.zoom = fixed_zoom if fixed_zoom is not None else heat.choose_zoom(area, max_size)
    result.grid = grid = tiles.grid_covering(area, result.zoom)
    if grid.width * grid.height > MAX_GRID_PIXELS:
        raise ParameterError(
            f"zoom {grid.zoom} needs a {grid.width}x{grid.height} pixel image, more than "
            f"{MAX_GRID_PIXELS / 1e9:.0f} Gpx: lower --zoom, narrow --bounds or use --extent auto")
    bottom_zoom = max(result.zoom - 4, 0) if min_zoom is None else int(min_zoom)
    if bottom_zoom > result.zoom:
        raise ParameterError(f"min zoom {bottom_zoom} is above the output zoom {result.zoom}")

    if mode == "lines":
        rows, cols = heat.line_pixels(xy, heat.split_gaps(xy, offsets), grid.zoom)
    else:
        rows, cols = heat.point_pixels(xy, grid.zoom)
    count_tiles = heat.tile_counts(rows, cols, grid)
    scaled = heat.cdf_scale_tiles(count_tiles) if cdist else heat.linear_scale_tiles(count_tiles)
    heat_tiles = heat.blur_tiles(scaled, sigma, grid)
    result.data_tiles = len(heat_tiles)

    tags = {
        "GEOHEAT_VERSION": __version__,
        "ZOOM": result.zoom,
        "SIGMA": sigma,
        "SCALING": "cdf" if cdist else "linear",
        "MODE": mode,
        "FILES": result.files_read,
        "POINTS": result.points_used,
        "EXTENT": "bounds" if box else extent,
        "TIFFTAG_SOFTWARE": f"geoheat {__version__}",
    }
    picture = None
    if grid.width * grid.height <= MAX_PNG_PIXELS:
        heatmap = heat.to_dense(heat_tiles, grid)
        if provider is None:
            picture = heat.shade(heatmap, lut, look.background)
        else:
            picture, result.basemap = draw_over_basemap(
                heatmap, grid, provider, look, rgba_lut, attribution, tile_cache=tile_cache,
                max_tiles=max_tiles, timeout=tile_timeout, progress=progress)
            from .basemap import describe_missing

            missing = describe_missing(result.basemap)
            if missing and on_warning:
                on_warning(missing)
        del heatmap
    else:
        del outputs["png"]
        if on_warning:
            on_warning(f"{output}: no PNG for a {grid.width}x{grid.height} pixel image (more "
                       f"than {MAX_PNG_PIXELS // 2**20} Mpx); the GeoTIFF holds the heat; "
                       "lower --zoom for a PNG")

    paths = list(outputs.values())
    with staged(paths) as temps:
        temp = dict(zip(outputs, temps))
        if picture is not None:
            write_png(temp["png"], picture, grid)
        write_geotiff(temp["tif"], heat_tiles, grid, tags)
        write_qml(temp["qml"], rgba_lut)
        if csv:
            write_csv(temp["csv"], heat_tiles, grid)
        if rgba_tif or mbtiles is not None:
            rgba_tiles = {key: heat.shade_rgba(block, rgba_lut)
                          for key, block in heat_tiles.items()}
        if rgba_tif:
            write_tiled_cog(temp["rgba"], rgba_tiles, grid, count=4, dtype="uint8",
                            nodata=None, tags=tags)
        if counts:
            write_tiled_cog(temp["counts"], count_tiles, grid, count=1, dtype="uint32",
                            nodata=0, tags=tags, descriptions=["passes" if mode == "lines"
                                                               else "trackpoints"])
        if mbtiles is not None:
            write_mbtiles(temp["mbtiles"], rgba_tiles, grid, bottom_zoom,
                          mbtiles_metadata(outputs["mbtiles"], grid, bottom_zoom, result))
    result.outputs = paths
    result.seconds = time.perf_counter() - started
    return result


def draw_over_basemap(heatmap, grid, provider, look, rgba_lut, attribution=None, *,
                      tile_cache=None, max_tiles=DEFAULT_MAX_TILES,
                      timeout=DEFAULT_TIMEOUT, progress=None):
    """The PNG's picture: the heat screen-blended over the toned map, attribution stamped."""
    from .basemap import fetch_basemap

    rgb, have, report = fetch_basemap(
        provider, grid, Path(tile_cache) if tile_cache else None, max_tiles=max_tiles,
        timeout=timeout, progress=progress)
    backdrop = heat.tone_map(rgb, have, look.map_brightness, look.map_tint, look.background)
    picture = heat.blend_screen(backdrop, heat.shade_rgba(heatmap, rgba_lut))
    text = provider.attribution if attribution is None else attribution
    if text and have.any():
        font.stamp(picture, text, scale=1 if grid.width < 1200 else 2)
    return picture, report


def mbtiles_metadata(path: Path, grid: Grid, min_zoom: int, result: BuildResult) -> dict:
    """The MBTiles metadata rows geoheat sets beyond GDAL's own."""
    bounds = tiles.grid_bounds(grid)
    centre = heat.unproject(np.array([[(bounds.left + bounds.right) / 2,
                                       (bounds.bottom + bounds.top) / 2]]))[0]
    return {
        "name": path.stem,
        "description": f"geoheat heatmap of {plural(result.files_read, 'GPX file')}, "
                       f"{result.points_used:,} points",
        "attribution": f"Heatmap made with geoheat {__version__}",
        "type": "overlay",
        "center": f"{centre[0]:.6f},{centre[1]:.6f},{grid.zoom}",
        "minzoom": str(min_zoom),
        "maxzoom": str(grid.zoom),
    }


def select_extent(xy: np.ndarray, box: Bbox | None, extent: str) -> tuple[np.ndarray, Bbox]:
    """Which points to draw (a mask) and the area to cover."""
    if box is not None:
        keep = heat.inside(xy, box)
        if not keep.any():
            raise InputError("no trackpoint lies inside --bounds")
        return keep, box
    keep = heat.main_cluster(xy) if extent == "auto" else np.ones(len(xy), dtype=bool)
    return keep, heat.points_bounds(xy[keep])


def describe_inputs(result: BuildResult) -> str:
    """What happened to the files found, in a few words."""
    parts = [f"{plural(result.files, 'file')} found",
             f"{result.files_read} with track points"]
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    parts += [f"{n} left out ({why})" for why, n in sorted(result.left_out.items())]
    if result.duplicates:
        parts.append(f"{result.duplicates} duplicates")
    if result.points_read and not result.points_read - result.points_invalid:
        parts.append("no valid positions")
    return ", ".join(parts)
