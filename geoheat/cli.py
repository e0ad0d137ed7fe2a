"""The `geoheat` command: parses options and calls geoheat.build; nothing else."""

import logging
import sys
from pathlib import Path

import click

from . import __version__, cache, pipeline, reading, tiles
from .colormaps import COLORMAPS, STYLES
from .errors import GeoheatError


class UserError(click.ClickException):
    """A GeoheatError on its way to the terminal: one line, exit code 2."""

    exit_code = 2


class OneLineErrors(click.Group):
    """A group that reports usage errors in one line, as geoheat's own errors are."""

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.format_message())
            sys.exit(0)
        except click.ClickException as err:
            click.echo(f"geoheat: error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except (click.Abort, KeyboardInterrupt):  # outputs are staged: nothing half-written
            click.echo("geoheat: interrupted", err=True)
            sys.exit(130)


class ZoomType(click.ParamType):
    """An OSM zoom level 0-19, or 'auto'."""

    name = "0-19|auto"

    def convert(self, value, param, ctx):
        try:
            zoom = pipeline.check_zoom(value)
        except GeoheatError as err:
            self.fail(str(err), param, ctx)
        return "auto" if zoom is None else zoom


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="geoheat")
def cli():
    """geoheat: a heatmap of your GPS tracks."""


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--gpx-dir", "gpx_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A folder of GPX files (same as giving it as an input).")
@click.option("--filter", "--gpx-filter", "pattern", default=None,
              help="Glob selecting files in input folders and zips ('**/*.gpx' descends)  "
                   "[default: every .gpx, .fit, .tcx, plain or .gz]")
@click.option("--year", "--gpx-year", "years", multiple=True, type=int,
              help="Keep activities that started in YEAR (repeatable).")
@click.option("--type", "types", multiple=True, metavar="TYPE[,TYPE...]",
              help="Keep these activity types (Strava's names: Ride, Run, Walk, Hike, ...).")
@click.option("--bounds", "--gpx-bound", type=float, nargs=4, default=None,
              metavar="LAT_MIN LAT_MAX LON_MIN LON_MAX",
              help="Keep points inside this box; it is also the output extent.")
@click.option("--extent", type=click.Choice(pipeline.EXTENTS), default="auto", show_default=True,
              help="auto: the densest connected area of the tracks; all: every point.")
@click.option("--zoom", type=ZoomType(), default="auto", show_default=True,
              help="OSM zoom level; auto: the largest that fits --max-size.")
@click.option("--max-size", type=click.IntRange(min=256), default=4096, show_default=True,
              help="With --zoom auto: the image's longer side at most, in pixels.")
@click.option("--sigma", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Gaussian blur in pixels; 0 for none.")
@click.option("--no-cdist", is_flag=True, help="Scale heat linearly, not by its CDF.")
@click.option("--mode", type=click.Choice(pipeline.MODES), default="lines", show_default=True,
              help="lines: draw each track between its points; points: count track points.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Processes reading GPX files  [default: all cores]")
@click.option("--cache", "parse_cache", type=click.Path(path_type=Path), default=None,
              help="Folder of parsed tracks reused across runs  [default: the user cache folder]")
@click.option("--no-cache", is_flag=True, help="Read every file again; keep nothing.")
@click.option("--csv", is_flag=True, help="Also write latitude,longitude,intensity CSV.")
@click.option("--rgba-tif", is_flag=True,
              help="Also write NAME-rgba.tif: the coloured heat, transparent elsewhere.")
@click.option("--counts", is_flag=True,
              help="Also write NAME-counts.tif: trackpoints per pixel, before scaling.")
@click.option("--mbtiles", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Also write MBTiles of the coloured heat (PNG tiles).")
@click.option("--min-zoom", type=ZoomType(), default=None,
              help="Lowest MBTiles zoom level  [default: output zoom - 4]")
@click.option("--basemap", default="osm", show_default=True,
              help="Map under the PNG's heat: osm, none, an xyzservices name "
                   "(e.g. OpenStreetMap.HOT) or a URL template with {z}/{x}/{y}.")
@click.option("--style", type=click.Choice(list(STYLES)), default="hot", show_default=True,
              help="hot: grey inverted map, 'hot' heat; strava: orange heat on a dark map.")
@click.option("--cmap", type=click.Choice(list(COLORMAPS)), default=None,
              help="Colormap of the heat  [default: the style's]")
@click.option("--attribution", default=None,
              help="Text stamped on the PNG  [default: the map provider's]")
@click.option("--api-key", default=None, help="API key for a basemap provider that needs one.")
@click.option("--tile-cache", type=click.Path(path_type=Path), default=None,
              help="Folder of cached map tiles  [default: the user cache folder]")
@click.option("--max-tiles", type=click.IntRange(min=1), default=tiles.DEFAULT_MAX_TILES,
              show_default=True, help="Refuse to download more map tiles than this.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("heatmap.png"),
              show_default=True, help="The PNG; the .tif and .csv share its stem.")
@click.option("--quiet", "-q", is_flag=True, help="No progress, warnings or summary.")
def build(inputs, gpx_dirs, pattern, years, types, bounds, extent, zoom, max_size, sigma, no_cdist,
          mode, jobs, parse_cache, no_cache, csv, rgba_tif, counts, mbtiles, min_zoom, basemap, style, cmap, attribution, api_key,
          tile_cache, max_tiles, output, quiet):
    """Build a heatmap from activity files, folders and Strava export zips (default: gpx/).

    GPX, FIT and TCX files are read, plain or gzipped; a Strava bulk export (the zip,
    or its unpacked folder) is read through its activities.csv.
    """
    sources = [*inputs, *gpx_dirs] or [Path("gpx")]
    if no_cache:
        parse_cache = None
    elif parse_cache is None:
        parse_cache = cache.default_cache_dir()
    try:
        result = pipeline.build(
            sources, output, zoom=zoom, sigma=sigma, cdist=not no_cdist, years=years or None,
            types=[t for item in types for t in item.split(",") if t.strip()] or None,
            pattern=pattern, bounds=bounds, extent=extent, max_size=max_size, csv=csv,
            rgba_tif=rgba_tif, counts=counts, mbtiles=mbtiles,
            min_zoom=None if min_zoom == "auto" else min_zoom,
            basemap=basemap, style=style, cmap=cmap, attribution=attribution, api_key=api_key,
            tile_cache=tile_cache, max_tiles=max_tiles, mode=mode, parse_cache=parse_cache,
            jobs=jobs or reading.default_jobs(),
            on_warning=None if quiet else warn,
            progress=progress_bar if not quiet and sys.stderr.isatty() else None,
        )
    except GeoheatError as err:
        raise UserError(str(err)) from None
    if not quiet:
        click.echo(summary(result, extent), err=True)


def warn(message: str) -> None:
    """A warning line on stderr, clear of any progress bar."""
    prefix = "\r\x1b[K" if sys.stderr.isatty() else ""
    click.echo(f"{prefix}geoheat: warning: {message}", err=True)


def progress_bar(items, label, length=None):
    """Yield items while a progress bar counts them on stderr (a terminal: logs get the summary)."""
    with click.progressbar(items, length=length, label=label, file=sys.stderr, show_pos=True,
                           item_show_func=_item_name) as bar:
        yield from bar


def _item_name(item):
    name = getattr(item, "name", None)  # a parsed file's name; map tiles have none
    return name.rsplit("/", 1)[-1] if isinstance(name, str) else None


def summary(result: pipeline.BuildResult, extent: str) -> str:
    """The one-line report of a build."""
    grid = result.grid
    read = f"{pipeline.plural(result.files_read, 'file')} read"
    if result.skipped:
        read += f", {len(result.skipped)} skipped"
    for why, n in sorted(result.left_out.items()):
        read += f", {n} left out ({why})"
    if result.duplicates:
        read += f", {result.duplicates} duplicates dropped"
    if len(result.types) > 1 or "unknown" not in result.types:
        read += " (" + ", ".join(f"{n} {kind}" for kind, n in result.types.most_common())
        read += "; " + ", ".join(f"{n} {fmt.upper()}" for fmt, n in sorted(result.formats.items()))
        read += ")"
    points = f"{result.points_used:,} points used"
    if result.points_outside:
        hint = " (--extent all keeps them)" if extent == "auto" else ""
        points += f", {result.points_outside:,} outside the extent{hint}"
    if result.points_invalid:
        points += f", {result.points_invalid:,} invalid"
    ignored = ""
    if result.routes or result.waypoints:
        ignored = (f"; ignored {pipeline.plural(result.routes, 'route')}, "
                   f"{pipeline.plural(result.waypoints, 'waypoint')}")
    names = " ".join(str(p) for p in result.outputs if p.suffix != ".qml")
    return (f"geoheat: {read}; {points}{ignored}; zoom {result.zoom}, "
            f"{grid.width}x{grid.height} px; {result.seconds:.1f} s -> {names}")


def main():
    """Entry point of the `geoheat` console script."""
    # GDAL's own messages reach Python logging; geoheat words what matters itself,
    # so keep the rest off the user's terminal.
    for name in ("fiona", "rasterio"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    cli(prog_name="geoheat")
