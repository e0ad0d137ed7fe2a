"""The options `geoheat build` and `geoheat serve` share, each declared once as a click
decorator (as rasterio's rio/options.py is for rio's commands), and the one place the
command line's values become a BuildOptions.

Only click and the standard-library modules options and checks are imported, so
`geoheat --help` stays instant; the cache folder is looked up when a command runs.
"""

import math
from pathlib import Path

import click

from .checks import check_zoom
from .colormaps import COLORMAP_NAMES, STYLE_NAMES
from .errors import GeoheatError
from .options import MODES, NORMALIZES, SCALINGS


class UserError(click.ClickException):
    """A GeoheatError on its way to the terminal: one line, exit code 2."""

    exit_code = 2


class ZoomType(click.ParamType):
    """An OSM zoom level 0-19, or 'auto' (-1, the original script's word for it)."""

    name = "0-19|auto"

    def convert(self, value, param, ctx):
        try:
            return check_zoom(value)
        except GeoheatError as err:
            self.fail(str(err), param, ctx)


# --- what is read ----------------------------------------------------------------------

pattern = click.option(
    "--filter", "--gpx-filter", "pattern", default=None,
    help="Glob selecting files in input folders and zips ('**/*.gpx' descends)  "
         "[default: every .gpx, .fit, .tcx, plain or .gz]")
max_file_size = click.option(
    "--max-file-size", type=str, default="512M", show_default=True, metavar="SIZE",
    help="Skip an activity file larger than this uncompressed (K, M, G suffixes).")
jobs = click.option("--jobs", "-j", type=int, default=None,
                    help="Processes reading activity files  [default: all cores]")
parse_cache = click.option(
    "--cache", "parse_cache", type=click.Path(path_type=Path), default=None,
    help="Folder of parsed tracks reused across runs  [default: the user cache folder]")
no_cache = click.option("--no-cache", is_flag=True, help="Read every file again; keep nothing.")

# --- what is drawn ---------------------------------------------------------------------

years = click.option("--year", "--gpx-year", "years", multiple=True, metavar="YEAR[,YEAR...]",
                     help="Keep activities that started in YEAR (repeatable).")
types = click.option(
    "--type", "types", multiple=True, metavar="TYPE[,TYPE...]",
    help="Keep these activity types (Strava's names: Ride, Run, Walk, Hike, ...; Other: a "
         "sport Strava has no name for; untyped: none named). Default: all but VirtualRide "
         "and VirtualRun.")
bounds = click.option("--bounds", "--gpx-bound", type=float, nargs=4, default=None,
                      metavar="LAT_MIN LAT_MAX LON_MIN LON_MAX",
                      help="Keep points inside this box; it is also the output extent.")


def extent(choices):
    """--extent among choices (serve has no 'regions': its page shows one area)."""
    told = ["auto: the densest connected area of the tracks", "all: every point"]
    if "regions" in choices:
        told.append("regions: one output set per region, named after its biggest town")
    return click.option("--extent", type=click.Choice(choices), default="auto",
                        show_default=True, help="; ".join(told) + ".")


keep_duplicates = click.option(
    "--keep-duplicates", is_flag=True,
    help="Draw an activity found twice (a .gpx and a .fit of one ride) twice.")


def privacy_options(command):
    """--privacy-zone, --privacy-file, --privacy, --hide-ends (geoheat.privacy): the same
    for build and serve, so a page never shows what a build hides."""
    for option in reversed([
        click.option("--privacy-zone", "privacy_zones", multiple=True,
                     metavar="LAT,LON[,RADIUS_M]",
                     help="Draw nothing within RADIUS_M (default 200, at most 5000) metres "
                          "of LAT,LON (repeatable)."),
        click.option("--privacy-file", type=click.Path(path_type=Path), default=None,
                     metavar="FILE", help="Privacy zones, one LAT,LON[,RADIUS_M] a line "
                                          "(kept out of the shell's history)."),
        click.option("--privacy", type=click.Choice(["auto", "off"]), default=None,
                     help="auto: zones around places where at least 5 activities, and 10% "
                          "of them, start or end within 200 m; also hides 200 m at each "
                          "end of every activity (see --hide-ends)."),
        click.option("--hide-ends", type=float, default=None, metavar="METRES",
                     help="Draw nothing of the first and last METRES of every activity  "
                          "[default: 200 with --privacy auto, else 0]"),
    ]):
        command = option(command)
    return command


# --- how it is drawn -------------------------------------------------------------------

sigma = click.option("--sigma", type=float, default=1.0, show_default=True,
                     help="Gaussian blur in pixels, 0-50; 0 for none.")
scaling = click.option(
    "--scaling", type=click.Choice(SCALINGS), default="cdf", show_default=True,
    help="cdf: heat is the share of pixels with fewer passes (Strava's method); "
         "linear: passes / the most passes")
normalize = click.option(
    "--normalize", type=click.Choice(NORMALIZES), default="global", show_default=True,
    help="global: one scale for the whole map; local: each pixel ranked among its "
         "neighbourhood's (~2 km) counts, so quiet streets read beside busy ones.")
mode = click.option("--mode", type=click.Choice(MODES), default="lines", show_default=True,
                    help="lines: draw each track between its points; points: count track "
                         "points.")


def style(help_text):
    """--style: what the look covers differs (a build's PNG also tones the map)."""
    return click.option("--style", type=click.Choice(STYLE_NAMES), default="hot",
                        show_default=True, help=help_text)


cmap = click.option("--cmap", type=click.Choice(COLORMAP_NAMES), default=None,
                    help="Colormap of the heat  [default: the style's]")

# --- telling ---------------------------------------------------------------------------


def verbose(help_text):
    """-v, --verbose: what more is said differs (serve also logs requests)."""
    return click.option("--verbose", "-v", is_flag=True, help=help_text)


def quiet(help_text):
    """-q, --quiet: what is kept quiet differs (a build's summary)."""
    return click.option("--quiet", "-q", is_flag=True, help=help_text)


# --- from values to settings -----------------------------------------------------------

def reading_settings(parse_cache: Path | None, no_cache: bool, jobs: int | None,
                     max_file_size: str) -> dict:
    """--cache, --no-cache, --jobs and --max-file-size as BuildOptions settings: the
    command line reads with the user cache folder and all cores unless told otherwise."""
    from .cache import default_cache_dir
    from .checks import available_cores

    return {"parse_cache": None if no_cache else parse_cache or default_cache_dir(),
            "jobs": jobs if jobs is not None else available_cores(),
            "max_file_size": parse_size(max_file_size)}


def build_options(inputs, *, parse_cache, no_cache, jobs, max_file_size, **settings):
    """The BuildOptions of a command's values: the inputs (gpx/ when none is given), the
    reading settings resolved by reading_settings, the other settings as they are."""
    from .options import BuildOptions

    return BuildOptions(inputs=list(inputs) or [Path("gpx")],
                        **reading_settings(parse_cache, no_cache, jobs, max_file_size),
                        **settings)


MAX_SIZE_LIMIT = 2**62  # the largest --max-file-size taken


def parse_size(text: str) -> int:
    """'512M', '2G', '300k', '1000000' as bytes (K, M, G: powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = float(number[:len(number) - len(unit)]) * units[unit]
    except ValueError:
        value = math.nan
    # nan, inf and 1e999 (inf) are no size; beyond 2**62 bytes no limit is meant either,
    # and zlib and read() take at most a signed 64-bit length.
    if not math.isfinite(value) or value > MAX_SIZE_LIMIT:
        raise UserError(f"--max-file-size: not a size such as 512M or 2G: {text!r}")
    return max(int(value), 0)
