"""`build`: activity files in, heatmap files out, one stage a module.

read (sources, reading) -> select (activities, extent) -> rasterise (rasterize)
-> scale and blur (heat) -> colour (colour, basemap) -> write (writers). Reading and
counting go through the build's counting backend (backends: here or on Dask), the
writing through the table of output kinds (output_kinds, write_outputs).
"""

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import tiles
from .activities import select_activities
from .backends import open_backend
from .build_privacy import build_privacy
from .colormaps import STYLES, lut, with_alpha
from .colour import over_map, shade_strips
from .counting import LocalBackend, record
from .errors import InputError, ParameterError, ReadError
from .extent import choose_area, choose_zoom
from .legend import add_legend
from .heat import blur_tiles
from .level import level_scale, plan_of, scaled
from .checks import available_cores, available_memory
from .options import BuildOptions
from .output_kinds import TILES, kinds_in
from .projection import unproject
from .reading import Progress, load_points
from .region_builds import merged, named_regions, region_options
from .report import BuildResult, describe_inputs, to_json, warnings
from .tiles import Grid
from .outputs import OutputSet, check_destinations
from .pyramid import default_min_zoom, level_grid, levels
from .writers import check_writable_folder, side_files
from .write_outputs import Deferred, pyramid_zooms, write_outputs, zooms_above

# Above this many pixels no PNG is made (its RGB alone would be 200 MB); the GeoTIFF and
# MBTiles, written tile by tile, have no such limit.
MAX_PNG_PIXELS = 2**26
# The largest grid geoheat writes: GDAL reads all of it once to make the overviews.
MAX_GRID_PIXELS = 2**33

Warn = Callable[[str], None]


def build(inputs: Iterable[str | Path] | BuildOptions = ("gpx",),
          output: str | Path = "heatmap.png", *, on_warning: Warn | None = None,
          progress: Progress | None = None, cdist: bool | None = None,
          **settings) -> BuildResult:
    """Build a heatmap and write its PNG, GeoTIFF (COG), QGIS style and other outputs.

    inputs: activity files (GPX, FIT, TCX, plain or .gz), folders and Strava export zips
    or folders; or a ready BuildOptions. settings: any BuildOptions field (zoom, sigma,
    years, types, bounds, mbtiles, basemap, parse_cache, jobs, ...); cdist=False is the
    old name of scaling='linear'. on_warning gets one line per problem; progress wraps
    long loops (see reading.Progress). Raises a GeoheatError subclass when nothing
    useful can be made.
    """
    if cdist is not None:
        settings.setdefault("scaling", "cdf" if cdist else "linear")
    if isinstance(inputs, BuildOptions):
        options = inputs.replace(**settings) if settings else inputs
    else:
        options = BuildOptions(inputs=inputs, output=output, **settings)
    return run(options, on_warning, progress)


def run(options: BuildOptions, on_warning: Warn | None = None,
        progress: Progress | None = None,
        before_commit: Callable[[BuildResult], None] | None = None,
        keep_tiles: bool = False) -> BuildResult:
    """The stages of a build, in order, over checked options. before_commit(result) runs
    once every output is written, before they replace the previous set (the CLI writes
    the --site there: if it fails, the previous set stays as it was). keep_tiles: keep
    the heat tiles the build makes (as its MBTiles hold them) in result.tiles (a
    TileSet), for build --site."""
    started = time.perf_counter()
    warn = on_warning or (lambda message: None)
    provider = _basemap_provider(options)  # a bad basemap fails before any work
    if options.extent == "regions" and options.bounds is None:
        return _run_regions(options, provider, warn, progress, started)
    for path in {p.parent: p for p in reversed(options.outputs.values())}.values():
        check_writable_folder(path)  # one probe per folder, named by --output
    check_destinations({path: side_files(path) for path in options.outputs.values()})
    with OutputSet(options.outputs.values(), options.output, warn) as outputs, \
            open_backend(options) as backend:
        result = _build(options, outputs, provider, warn, progress, backend,
                        keep_tiles=keep_tiles)
        result.seconds = time.perf_counter() - started
        if options.report is not None:
            with outputs.writing(options.report) as temp:
                _write_report(temp, result)
        if before_commit is not None:
            before_commit(result)
        outputs.commit()
    return result


def _build(options, outputs, provider, warn, progress, backend,
           keep_tiles=False) -> BuildResult:
    """The stages, in order: read, select, rasterise, scale and blur, colour, write.
    backend: a backends.Backend that reads the inputs and counts the kept activities
    (here, or on Dask workers, which keep the points until counted)."""
    # Read
    sources, parsed = backend.read(options, warn, progress)

    # Select: from the activities' summaries, not their points
    kept, result = select_activities(parsed, options.years, options.types,
                                     options.keep_duplicates)
    for line in warnings(result, options.verbose):
        warn(line)
    if not kept:
        raise InputError(f"nothing to draw: {describe_inputs(result)}")
    box, area = choose_area([a.summary for a in kept], options.bounds, options.extent)
    if options.bounds is None and options.extent == "auto":
        result.regions = named_regions(kept, named=options.report is not None)
    shield = build_privacy(options, kept, result, warn)
    result.zoom = options.zoom if options.zoom is not None else choose_zoom(area, options.max_size)
    result.grid = grid = _checked_grid(tiles.grid_covering(area, result.zoom))
    min_zoom = default_min_zoom(grid) if options.min_zoom is None else options.min_zoom
    max_zoom = options.tile_zoom(result.zoom)
    if options.max_zoom is None and (keep_tiles or kinds_in(options.outputs, levels=TILES)):
        max_zoom = _affordable_zoom(kept, grid, max_zoom, available_memory(), warn)
    if min_zoom > result.zoom:
        raise ParameterError(f"min zoom {min_zoom} is above the output zoom {result.zoom}")
    if min_zoom > max_zoom:
        raise ParameterError(f"min zoom {min_zoom} is above max zoom {max_zoom}")

    # Rasterise: each activity's points counted on the output's grid and on the grid of
    # every pyramid level below it (and, for tile outputs, above it up to max_zoom), and
    # summed (map-reduce: one activity's points at a time)
    grids = [grid] + [level_grid(grid, zoom) for zoom in (
        *pyramid_zooms(options, grid, min_zoom, keep_tiles),
        *zooms_above(options, grid, max_zoom, keep_tiles))]
    source_of = {source.name: source for source in sources}
    counted = backend.count(kept, source_of, box, grids, options, result, warn, shield)
    counts, *below = record(result, counted)
    if options.explorer is not None:
        _explore(kept, source_of, options, shield, outputs, result, warn)

    # Scale, blur (the output's zoom, when an output first needs it: a GeoTIFF copied from
    # the output cache does not; the levels are scaled and blurred while writing)
    plan = plan_of([a.summary for a in kept], area)
    scale = _scaler(options, plan)
    workers = min(options.jobs, available_cores())  # --jobs: the blur's threads too
    heat = Deferred(lambda: blur_tiles(scale(counts, grid), options.sigma, grid,
                                       workers=workers))

    def pyramid(zooms, heat=True):
        """The levels at zooms, each from its own counts, one at a time (heat=False: their
        counts alone)."""
        by_zoom = {low.zoom: (low, level_counts) for low, level_counts in zip(grids[1:], below)}
        return levels((by_zoom[zoom] for zoom in zooms), scale, options.sigma, workers, heat)

    # Colour
    picture = None
    if "png" not in options.outputs:
        pass  # a GeoTIFF or tiles build: no picture, no map
    elif grid.width * grid.height <= MAX_PNG_PIXELS:
        picture = _picture(heat(), grid, options, provider, result, warn, progress)
        if options.legend:
            add_legend(picture, counts, options, tiles.RowView(heat(), grid))
    else:
        warn(f"{options.outputs['png']}: no PNG for a {grid.width}x{grid.height} pixel image "
             f"(more than {MAX_PNG_PIXELS // 2**20} Mpx); the GeoTIFF holds the heat; lower "
             "--zoom for a PNG")

    # Write
    result.outputs = write_outputs(options, outputs, grid, counts, heat, picture, result,
                                   min_zoom, pyramid, plan, max_zoom, keep_tiles, counted.key)
    if result.regions:  # the drawn region: what was drawn there, and where
        result.regions[0] = result.regions[0]._replace(
            activities=result.activities, outputs=[str(p) for p in result.outputs])
    return result


def _run_regions(options, provider, warn, progress, started) -> BuildResult:
    """--extent regions: the inputs read once, then one build per region (its --bounds
    the region's), each output named after its place (heatmap-lisbon.png), all written
    as one set. The result is the first region's, with every region in result.regions."""
    backend = LocalBackend(options)  # reads once, for every region's build
    sources, parsed = backend.read(options, warn, progress)
    kept, selected = select_activities(parsed, options.years, options.types,
                                       options.keep_duplicates)
    if not kept:
        for line in warnings(selected, options.verbose):
            warn(line)
        raise InputError(f"nothing to draw: {describe_inputs(selected)}")
    found = named_regions(kept, named=True)
    each = region_options(options, found)
    paths = [p for o in each for p in o.outputs.values()] + [options.report] * bool(options.report)
    for path in {p.parent: p for p in reversed(paths)}.values():
        check_writable_folder(path)
    check_destinations({path: side_files(path) for path in paths})
    said = set()

    def once(line):  # each region's build says the files' warnings again
        if line not in said:
            said.add(line)
            warn(line)

    results = []
    with OutputSet(paths, options.output, warn) as outputs:
        for each_options in each:
            results.append(_build(each_options, outputs, provider, once, progress,
                                  backend))
        drawn = [region._replace(activities=r.activities, outputs=[str(p) for p in r.outputs])
                 for region, r in zip(found, results)]
        result = merged(results, sum(a.points for a in kept))
        result.regions = drawn
        result.outputs += [options.report] * bool(options.report)  # the set's one report
        result.seconds = time.perf_counter() - started
        if options.report is not None:
            with outputs.writing(options.report) as temp:
                _write_report(temp, result)
        outputs.commit()
    return result


def _explore(kept, source_of, options, shield, outputs, result, warn) -> None:
    """The explorer GeoPackage: every kept activity's drawn lines (whatever the extent,
    privacy cut out) as the tiles they pass through; its score recorded in result."""
    from . import explorer

    zoom = options.explorer_zoom

    def each():
        for activity in kept:
            try:
                full = load_points(activity, source_of[activity.name], options.parse_cache,
                                   options.max_file_size)
            except ReadError:  # said by the count, which skipped it too
                continue
            start = activity.start.date() if activity.start is not None else None
            yield explorer.activity_tiles(full, shield, zoom), start

    found = explorer.visited(each(), zoom)
    score = explorer.score(found)
    result.explorer = {"zoom": zoom, "tiles": score.tiles, "max_square": score.max_square,
                       "max_cluster": len(score.cluster)}
    with outputs.writing(options.explorer) as temp:
        explorer.write_geopackage(temp, found, score)


def _affordable_zoom(kept, grid: Grid, max_zoom: int, memory: int, warn) -> int:
    """The highest zoom up to max_zoom whose levels above the output's fit in half the
    memory free, at rasterize.BYTES_PER_DATA_TILE a tile with heat; the tiles with heat
    estimated from the tracks' length (at most the extent's tiles). Says so when it stops
    below max_zoom (--max-zoom asks for more and is refused by the count if too big)."""
    from .rasterize import BYTES_PER_DATA_TILE

    bounds = tiles.grid_bounds(grid)
    stretch = np.cosh((bounds.bottom + bounds.top) / 2 / tiles.EARTH_RADIUS)
    length = sum(a.summary.length for a in kept) * stretch  # Mercator metres
    segments = len(kept)
    spent = 0
    for zoom in range(grid.zoom + 1, max_zoom + 1):
        side = tiles.TILE_SIZE * tiles.resolution(zoom)
        area = ((bounds.right - bounds.left) / side + 1) * ((bounds.top - bounds.bottom) / side + 1)
        spent += min(area, 1.5 * length / side + segments) * BYTES_PER_DATA_TILE
        if spent > memory / 2:
            warn(f"tiles stop at zoom {zoom - 1}: zoom {zoom} would need about "
                 f"{spent / 2**30:.1f} GB of memory, more than half the "
                 f"{memory / 2**30:.1f} GB free (--max-zoom to choose)")
            return max(zoom - 1, grid.zoom)
    return max_zoom


def _scaler(options: BuildOptions, plan):
    """Counts on a grid to heat in [0, 1], the same at every level and as `geoheat serve`
    makes them (level.py): the global scaling over the level's counts (a sample of its
    tiles when it is large), or local contrast (each pixel ranked within ~2 km)."""
    def scale(counts, grid):
        return scaled(counts, grid, level_scale(counts, grid, options.scaling,
                                                options.normalize, plan))

    return scale


def _write_report(path: Path, result: BuildResult) -> None:
    bounds = tiles.grid_bounds(result.grid)
    corners = unproject(np.array([[bounds.left, bounds.bottom], [bounds.right, bounds.top]]))
    path.write_text(to_json(result, tuple(corners.ravel())), encoding="utf-8")


def _basemap_provider(options: BuildOptions):
    if options.basemap is None or "png" not in options.outputs:  # only the PNG has a map
        return None
    from .basemap import resolve_provider  # urllib and friends, only with a basemap

    return resolve_provider(options.basemap, options.api_key)


def _checked_grid(grid: Grid) -> Grid:
    if grid.width * grid.height > MAX_GRID_PIXELS:
        raise ParameterError(
            f"zoom {grid.zoom} needs a {grid.width}x{grid.height} pixel image, more than "
            f"{MAX_GRID_PIXELS / 1e9:.0f} Gpx: lower --zoom, narrow --bounds or use --extent auto")
    return grid


def _picture(heat, grid, options, provider, result, warn, progress) -> np.ndarray:
    """The PNG's (3, h, w) picture: the heat on the style's background, or over the map."""
    look = STYLES[options.style]
    heatmap = tiles.RowView(heat, grid)  # read in strips: no dense float copy of the grid
    if provider is None:
        table = lut(options.colormap)
        return shade_strips(heatmap, table, look.background,
                            with_alpha(table) if look.light else None)
    from .basemap import describe_missing, fetch_basemap

    rgb, have, result.basemap = fetch_basemap(
        provider, grid, options.tile_cache, max_tiles=options.max_tiles,
        timeout=options.tile_timeout, deadline=options.basemap_deadline, progress=progress)
    missing = describe_missing(result.basemap)
    if missing:
        warn(missing)
    text = provider.attribution if options.attribution is None else options.attribution
    table = lut(options.colormap)
    return over_map(heatmap, rgb, have, look, table, with_alpha(table), text)


