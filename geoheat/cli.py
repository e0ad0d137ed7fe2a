"""The `geoheat` command: each verb resolves its options and calls one library function.

Only click and the options modules are imported at start; the pipeline (numpy,
rasterio, ...) is imported inside the command, so `geoheat --help` is instant. The
options build and serve share are declared once, in cli_options.
"""

import logging
import sys
from pathlib import Path

import click

from . import __version__, cli_options as shared
from .cli_options import UserError, ZoomType
from .errors import GeoheatError, ParameterError
from .options import BUILD_EXTENTS, DEFAULT_DEADLINE, DEFAULT_MAX_TILES, DEFAULT_TIMEOUT, EXTENTS


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


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="geoheat")
def cli():
    """geoheat: a heatmap of your GPS tracks."""


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path())  # str: fsspec URLs keep their '//'
@click.option("--gpx-dir", "--dir", "gpx_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A folder of activity files (same as giving it as an input).")
@shared.pattern
@shared.years
@shared.types
@shared.bounds
@shared.extent(BUILD_EXTENTS)
@shared.keep_duplicates
@click.option("--zoom", type=ZoomType(), default="auto", show_default=True,
              help="OSM zoom level; auto (or -1): the largest that fits --max-size.")
@click.option("--max-size", type=int, default=4096, show_default=True,
              help="With --zoom auto: the image's longer side at most, in pixels.")
@shared.sigma
@shared.scaling
@click.option("--no-cdist", is_flag=True, help="The same as --scaling linear.")
@shared.normalize
@shared.mode
@shared.max_file_size
@shared.jobs
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Read and count on a Dask cluster: a scheduler's address "
                   "(tcp://host:8786) or local:N (N worker processes here); inputs may then "
                   "be fsspec URLs (s3://, gs://, https://). Needs the dask extra.")
@shared.parse_cache
@shared.no_cache
@click.option("--png/--no-png", "png", default=None,
              help="Make the PNG (over the basemap)  [default: when --output names a .png]")
@click.option("--legend/--no-legend", default=True, show_default=True,
              help="A colour bar on the PNG with the passes its colours stand for.")
@click.option("--csv", is_flag=True, help="Also write latitude,longitude,intensity CSV.")
@click.option("--csv-min", type=float, default=0.1, show_default=True,
              help="The CSV lists pixels with heat above this (0-1).")
@click.option("--rgba-tif", is_flag=True,
              help="Also write NAME-rgba.tif: the coloured heat, transparent elsewhere.")
@click.option("--counts", is_flag=True,
              help="Also write NAME-counts.tif: passes or track points per pixel, unscaled.")
@click.option("--mbtiles", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Also write MBTiles of the coloured heat (PNG tiles).")
@click.option("--pmtiles", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Also write PMTiles (one file of map tiles, the same tiles as --mbtiles).")
@click.option("--min-zoom", type=ZoomType(), default=None,
              help="Lowest MBTiles/PMTiles zoom level  [default: where all the heat fits "
                   "one tile]")
@click.option("--max-zoom", type=ZoomType(), default=None,
              help="Highest MBTiles/PMTiles/--site zoom level, each level drawn from its own "
                   "counts  [default: 16, or the output zoom if higher]")
@click.option("--basemap", default="osm", show_default=True,
              help="Map under the PNG's heat: osm, none, an xyzservices name "
                   "(e.g. OpenStreetMap.HOT) or a URL template with {z}/{x}/{y}.")
@shared.style("hot: grey inverted map, 'hot' heat; strava: orange heat on a dark map.")
@click.option("--orange", is_flag=True, help="The same as --style strava.")
@shared.cmap
@click.option("--attribution", default=None,
              help="Text stamped on the PNG  [default: the map provider's]")
@click.option("--api-key", default=None, help="API key for a basemap provider that needs one.")
@click.option("--tile-cache", type=click.Path(path_type=Path), default=None,
              help="Folder of cached map tiles  [default: the user cache folder]")
@click.option("--max-tiles", type=int, default=DEFAULT_MAX_TILES, show_default=True,
              help="Refuse to download more map tiles than this.")
@click.option("--tile-timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Give up on one map tile after this long.")
@click.option("--basemap-deadline", type=float, default=DEFAULT_DEADLINE, show_default=True,
              metavar="SECONDS", help="Draw the map with the tiles had after this long.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("heatmap.png"),
              show_default=True,
              help="An output by its extension (.png, .tif, .mbtiles, .pmtiles); the others "
                   "share its stem. Without a .png, no PNG (and no basemap) unless --png.")
@click.option("--report", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Also write a JSON report: what became of every file, the counts, the outputs.")
@click.option("--site", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Also write a static web site of the heat over OpenStreetMap: index.html, "
                   "the viewer and XYZ tiles, zoom down to --min-zoom.")
@shared.privacy_options
@click.option("--explorer", type=click.Path(path_type=Path), default=None, metavar="FILE.gpkg",
              help="Also write a GeoPackage of the map tiles the lines pass through, with "
                   "the biggest square and cluster of them, styled for QGIS.")
@click.option("--explorer-zoom", type=click.IntRange(0, 19), default=14, show_default=True,
              help="The explorer tiles' zoom (17: squadrats).")
@shared.verbose("A warning line for every file, not one per reason.")
@shared.quiet("No progress, warnings or summary.")
def build(inputs, gpx_dirs, no_cdist, orange, quiet, site=None, **settings):
    """Build a heatmap from activity files, folders and Strava export zips (default: gpx/).

    GPX, FIT and TCX files are read, plain or gzipped; a Strava bulk export (the zip,
    or its unpacked folder) is read through its activities.csv.
    """
    from .pipeline import run
    from .report import summary

    if orange:
        settings["style"] = "strava"
    if no_cdist and click.get_current_context().get_parameter_source("scaling") \
            is click.core.ParameterSource.DEFAULT:  # an explicit --scaling wins
        settings["scaling"] = "linear"
    try:
        options = shared.build_options([*inputs, *gpx_dirs], **settings)
        if site is not None and options.extent == "regions":
            raise ParameterError("--site shows one area: use it with --extent auto or all")
        if site is not None and options.scheduler is not None:  # the site reads here too
            raise ParameterError("--site is made on this machine: leave out --scheduler")
        if site is not None:
            from .staticsite import check_site_folder

            check_site_folder(site)  # before any work
            if site.resolve() in {path.resolve() for path in options.outputs.values()}:
                from .errors import OutputError

                raise OutputError(f"{site}: is also an output of this build; name another "
                                  "folder for the site")
            if not options.privacy_asked and not quiet and not {"mbtiles", "pmtiles"} \
                    & options.outputs.keys():  # else the build says it
                from .privacy import SHARE_HINT

                warn(SHARE_HINT)
        written = None

        def write_site(result):  # before the outputs are committed: a failed site leaves them
            nonlocal written
            from .staticsite import build_site

            written = build_site(site, options, result)

        result = run(options, on_warning=None if quiet else warn,
                     progress=None if quiet else stderr_progress(),
                     before_commit=None if site is None else write_site,
                     keep_tiles=site is not None)
    except GeoheatError as err:
        raise UserError(str(err)) from None
    if not quiet:
        click.echo(summary(result, options.extent), err=True)
        if site is not None:
            click.echo(f"geoheat: site of {written:,} tiles -> {site}/index.html", err=True)


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback is reachable by others.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on  [default: 8000, or a free one if 8000 is taken]")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the browser.")
@shared.pattern
@shared.years
@shared.types
@shared.bounds
@shared.extent(EXTENTS)
@shared.keep_duplicates
@shared.sigma
@shared.scaling
@shared.normalize
@shared.mode
@shared.style("The heat's look (its colormap).")
@shared.cmap
@shared.max_file_size
@shared.jobs
@shared.parse_cache
@shared.no_cache
@shared.privacy_options
@shared.verbose("Log every request, and every file's warning.")
@shared.quiet("No progress or warnings.")
def serve(inputs, host, port, open_browser, quiet, **settings):
    """Show the heat over an OpenStreetMap map in the browser, on a local web server.

    INPUTS are activity files, folders and Strava exports (default: gpx/), rendered at any
    zoom as `geoheat build` would; or one MBTiles or PMTiles file, served as it is. The
    page starts with --year, --type, --scaling, --normalize and --cmap, and can change them.
    """
    from .renderedtiles import RenderedTiles, load_renderer
    from .serve import is_loopback, is_tile_file, make_server, open_tile_file, run_server

    verbose = settings["verbose"]
    try:
        if len(inputs) == 1 and is_tile_file(inputs[0]):
            if settings["privacy_zones"] or settings["privacy_file"] or settings["privacy"] \
                    or settings["hide_ends"]:
                raise UserError(f"{inputs[0]}: a tile file is served as it is: privacy "
                                "options apply when it is built (geoheat build --privacy ...)")
            source = open_tile_file(inputs[0])
        else:
            options = shared.build_options(inputs, **settings)
            renderer = load_renderer(
                options, on_warning=None if quiet else warn,
                progress=progress_bar if not quiet and sys.stderr.isatty() else None)
            source = RenderedTiles(renderer)
        if not is_loopback(host):
            warn(f"listening on {host}: anyone who can reach this machine sees your tracks")
        server = make_server(source, host, port, quiet=not verbose)
    except GeoheatError as err:
        raise UserError(str(err)) from None
    run_server(server, lambda line: click.echo(line, err=True), open_browser)


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
    item = item[0] if isinstance(item, tuple) else item  # (parsed file, whether cached)
    name = getattr(item, "name", None)  # a parsed file's name; map tiles have none
    return name.rsplit("/", 1)[-1] if isinstance(name, str) else None


def main():
    """Entry point of the `geoheat` console script."""
    # GDAL's own messages reach Python logging; geoheat words what matters itself,
    # so keep the rest off the user's terminal.
    for name in ("fiona", "rasterio"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    cli(prog_name="geoheat")


# --- the QGIS plugin (issue 25) --------------------------------------------------------

@cli.command("qgis-plugin")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--zip", "as_zip", is_flag=True,
              help="Write FOLDER/geoheat_qgis.zip, for QGIS's Plugins > Install from ZIP.")
def qgis_plugin(folder, as_zip):
    """Write geoheat's QGIS plugin into FOLDER: FOLDER/geoheat_qgis/ (or a zip).

    FOLDER is usually the python/plugins folder of a QGIS profile; the plugin adds the
    Processing algorithm geoheat:build, which runs this geoheat.
    """
    from .qgis import write_plugin

    try:
        written = write_plugin(folder, as_zip)
    except GeoheatError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"{folder}: cannot write the plugin ({err.strerror or err})") from None
    click.echo(f"geoheat: QGIS plugin -> {written}", err=True)


def stderr_progress():
    """The build's progress display: click's bar on a terminal; with the environment's
    GEOHEAT_PROGRESS=lines, plain lines a program reads (the QGIS plugin); else none."""
    import os

    if os.environ.get("GEOHEAT_PROGRESS") == "lines":
        return progress_lines
    return progress_bar if sys.stderr.isatty() else None


def progress_lines(items, label, length=None):
    """Yield items while writing 'geoheat: progress: LABEL DONE/TOTAL' lines on stderr:
    at the start, then at each whole percent (every 0.5 s when the total is unknown)."""
    import time

    def say(done):
        click.echo(f"geoheat: progress: {label} {done}/{'' if length is None else length}",
                   err=True)

    say(0)
    shown, last = 0, time.monotonic()
    for done, item in enumerate(items, 1):  # an item arrives done (a file read)
        if length:
            step = done * 100 // length
            if step != shown:
                shown = step
                say(done)
        elif time.monotonic() - last >= 0.5:
            last = time.monotonic()
            say(done)
        yield item
