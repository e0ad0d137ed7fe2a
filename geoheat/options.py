"""Every setting of a build in one object, checked once when it is made.

`BuildOptions` is what the CLI makes from its flags and what `geoheat.build(...)`
makes from its keywords; the pipeline then trusts it. It is made of five small frozen
parts, each checked by itself, so a stage can take only the part it uses:
`options.reading` (what to read and how), `options.selection` (which activities and
area, what is hidden), `options.drawing` (how the heat is counted, scaled and
coloured), `options.writing` (which files are written) and `options.map` (the basemap
under the PNG). Every setting is also read flat (`options.zoom`). Only the standard
library is imported here, so `geoheat --help` stays instant.
"""

import inspect
import math
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path

from .checks import (MAX_ZOOM, available_cores, check_bounds, check_scheduler, check_sigma,
                     check_zoom, is_url, one_of, split_types, split_years, whole_number)
from .colormaps import COLORMAP_NAMES, STYLE_NAMES
from .errors import ParameterError
from .output_kinds import output_paths

MIN_IMAGE_SIZE = 256  # one tile
# Tile outputs reach street zoom by default, whatever the PNG's zoom: a web map shows its
# own pixels there, not stretched ones.
TILE_ZOOM = 16
EXTENTS = ("auto", "all")
BUILD_EXTENTS = EXTENTS + ("regions",)  # one output set per region: build only
MODES = ("lines", "points")
SCALINGS = ("cdf", "linear")
NORMALIZES = ("global", "local")
# What one activity file may inflate to (a 2 MB .gpx.gz can hold 2 GiB): a documented
# limit, above any real track (a 24 h ride at 1 s is ~30 MB of GPX).
DEFAULT_MAX_FILE_SIZE = 512 * 2**20
# Basemap download limits (geoheat.basemap's), here so the CLI need not import it.
DEFAULT_MAX_TILES = 300  # a 4096 px image is 256 tiles: any --zoom auto image fits
DEFAULT_TIMEOUT = 10.0  # seconds per tile request
DEFAULT_DEADLINE = 60.0  # seconds for the whole basemap: a trickling server cannot hold a build


def _setter(part):
    """Set a frozen part's normalised values, once, while it is made."""
    return lambda name, value: object.__setattr__(part, name, value)


def _paths(part, *names) -> None:
    """A part's settings that name files, as Paths (None stays None)."""
    put = _setter(part)
    for name in names:
        value = getattr(part, name)
        put(name, None if value is None else Path(value))


@dataclass(frozen=True)
class Reading:
    """What to read and how: the files, the parse cache, the processes or Dask cluster."""

    inputs: tuple[Path, ...] = (Path("gpx"),)  # files, folders, Strava export zips (URLs: str)
    pattern: str | None = None  # glob on file names in folders and zips; None: every activity
    parse_cache: Path | None = None  # None: parse every file, keep nothing
    jobs: int = 1
    scheduler: str | None = None  # read and count on Dask: 'local:N' or an address
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # bytes one activity may take uncompressed
    verbose: bool = False  # a warning line for every file, not one per reason

    def __post_init__(self):
        put = _setter(self)
        inputs = [self.inputs] if isinstance(self.inputs, (str, Path)) else self.inputs
        put("inputs", tuple(p if is_url(p) else Path(p) for p in inputs))
        if not self.inputs:
            raise ParameterError("no input given: name activity files, folders or exports")
        if self.scheduler is not None:
            put("scheduler", check_scheduler(self.scheduler))
        urls = [p for p in self.inputs if is_url(p)]
        if urls and self.scheduler is None:
            raise ParameterError(f"{urls[0]}: URL inputs are read on a Dask cluster: add "
                                 "--scheduler (local:N for this machine)")
        whole_number("jobs", self.jobs, 1)
        whole_number("max file size", self.max_file_size, 1)
        cores = available_cores()
        if self.jobs > max(cores, 1) * 2:
            # Reading is CPU-bound: more processes than cores only cost memory
            # (64 on 2 cores started 68 processes and 5 GB).
            raise ParameterError(
                f"jobs must be 1-{cores * 2} here ({cores} cores), got {self.jobs}")
        _paths(self, "parse_cache")


@dataclass(frozen=True)
class Selection:
    """What is drawn: which activities, the area, and what privacy hides of them."""

    years: tuple[int, ...] | None = None  # keep activities that started in these years
    types: tuple[str, ...] | None = None  # keep these activity types (Strava's names)
    bounds: tuple[float, float, float, float] | None = None  # LAT_MIN LAT_MAX LON_MIN LON_MAX
    extent: str = "auto"  # without bounds: 'auto' (the main area), 'all' or 'regions'
    keep_duplicates: bool = False  # draw the same activity found twice twice
    # Privacy (geoheat.privacy)
    privacy_zones: tuple | None = None  # zones 'LAT,LON[,RADIUS_M]' (or tuples): nothing drawn
    privacy_file: Path | None = None  # a file of zones, one a line
    privacy: str | None = None  # 'auto': zones where many activities start or end
    hide_ends: float | None = None  # metres hidden at each end (None: 200 with auto, else 0)
    zones: tuple = field(init=False, repr=False, compare=False)  # given and from privacy_file

    def __post_init__(self):
        put = _setter(self)
        put("years", split_years(self.years))
        put("types", split_types(self.types))
        if self.bounds is not None:
            put("bounds", check_bounds(self.bounds))
        one_of("extent", self.extent, BUILD_EXTENTS)
        _check_privacy(self, put)

    @property
    def privacy_asked(self) -> bool:
        """Whether any privacy option is given (zones, auto, or hidden ends)."""
        return bool(self.zones) or self.privacy == "auto" or bool(self.hide_ends)


@dataclass(frozen=True)
class Drawing:
    """How the heat is made: the zoom, what is counted, its scaling, blur and colours."""

    zoom: int | None = None  # None: the largest that fits max_size
    max_size: int = 4096
    mode: str = "lines"  # 'lines': passes per pixel; 'points': track points per pixel
    scaling: str = "cdf"  # 'cdf' (Strava's method) or 'linear'
    normalize: str = "global"  # 'global': one scale for all; 'local': by neighbourhood
    sigma: float = 1.0  # Gaussian blur in pixels
    style: str = "hot"
    cmap: str | None = None  # None: the style's

    def __post_init__(self):
        put = _setter(self)
        put("zoom", check_zoom(self.zoom))
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int) \
                or self.max_size < MIN_IMAGE_SIZE:
            raise ParameterError(
                f"max size must be at least {MIN_IMAGE_SIZE} pixels, got {self.max_size!r}")
        one_of("mode", self.mode, MODES)
        one_of("scaling", self.scaling, SCALINGS)
        one_of("normalize", self.normalize, NORMALIZES)
        put("sigma", check_sigma(self.sigma))
        one_of("style", self.style, STYLE_NAMES)
        if self.cmap is not None:
            one_of("cmap", self.cmap, COLORMAP_NAMES)

    @property
    def colormap(self) -> str:
        """The heat's colormap: the one asked for, else the style's."""
        from .colormaps import STYLES

        return self.cmap or STYLES[self.style].cmap


@dataclass(frozen=True)
class Writing:
    """The files a build writes: `outputs` maps each kind to its path."""

    output: Path = Path("heatmap.png")  # names one output (.png, .tif, .mbtiles, .pmtiles);
    # the others share its stem
    png: bool | None = None  # None: a PNG when --output names one
    legend: bool = True  # a colour bar with its pass counts on the PNG
    csv: bool = False
    csv_min: float = 0.1  # the CSV's pixels: heat above this
    rgba_tif: bool = False
    counts: bool = False
    mbtiles: Path | None = None
    pmtiles: Path | None = None
    min_zoom: int | None = None  # lowest tile level; None: where the heat fits one tile
    max_zoom: int | None = None  # highest tile level; None: TILE_ZOOM, or the output's if higher
    explorer: Path | None = None  # a GeoPackage of the tiles the lines pass through
    explorer_zoom: int = 14
    report: Path | None = None  # a JSON report of the build, file by file
    outputs: dict = field(init=False, repr=False, compare=False)  # kind -> Path

    def __post_init__(self):
        put = _setter(self)
        put("output", Path(self.output))
        put("min_zoom", check_zoom(self.min_zoom, "min zoom"))
        put("max_zoom", check_zoom(self.max_zoom, "max zoom"))
        if self.min_zoom is not None and self.max_zoom is not None \
                and self.min_zoom > self.max_zoom:
            raise ParameterError(f"min zoom {self.min_zoom} is above max zoom {self.max_zoom}")
        if self.png is not None and not isinstance(self.png, bool):
            raise ParameterError(f"png must be True, False or None, got {self.png!r}")
        if not isinstance(self.csv_min, (int, float)) or isinstance(self.csv_min, bool) \
                or not 0 <= self.csv_min < 1:
            raise ParameterError(f"csv min must be a heat 0-1 (below 1), got {self.csv_min!r}")
        _paths(self, "mbtiles", "pmtiles", "report", "explorer")
        explorer_zoom = check_zoom(self.explorer_zoom, "explorer zoom")
        if explorer_zoom is None:
            raise ParameterError(f"explorer zoom must be 0-{MAX_ZOOM}, got {self.explorer_zoom!r}")
        put("explorer_zoom", explorer_zoom)
        put("outputs", output_paths(self))

    def tile_zoom(self, zoom: int) -> int:
        """The highest level of the tile outputs (--mbtiles, --pmtiles, --site) of a build
        at output zoom `zoom`: --max-zoom, else street zoom (TILE_ZOOM) or the output's
        own if higher."""
        return self.max_zoom if self.max_zoom is not None else max(TILE_ZOOM, zoom)


@dataclass(frozen=True)
class Basemap:
    """The map under the PNG's heat, and the limits on fetching its tiles."""

    basemap: str | None = None  # None or 'none', 'osm', an xyzservices name, a URL template
    attribution: str | None = None
    api_key: str | None = None
    tile_cache: Path | None = None
    max_tiles: int = DEFAULT_MAX_TILES
    tile_timeout: float = DEFAULT_TIMEOUT
    basemap_deadline: float = DEFAULT_DEADLINE

    def __post_init__(self):
        if self.basemap is not None and self.basemap.strip().lower() == "none":
            _setter(self)("basemap", None)
        whole_number("max tiles", self.max_tiles, 1)
        for name in ("tile_timeout", "basemap_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < math.inf:
                raise ParameterError(
                    f"{name.replace('_', ' ')} must be > 0 seconds, got {value!r}")
        _paths(self, "tile_cache")


PARTS = {"reading": Reading, "selection": Selection, "drawing": Drawing, "writing": Writing,
         "map": Basemap}  # BuildOptions' attribute -> the part's class
SETTINGS = {f.name: part for part, kind in PARTS.items() for f in fields(kind) if f.init}


@dataclass(frozen=True, init=False)
class BuildOptions:
    """Every setting of a build; made once, checked once (ParameterError, OutputError).

    BuildOptions(zoom=12, sigma=2, ...) takes every setting flat, as keywords, and
    sorts them into its parts; `options.zoom` reads one flat, `options.drawing` gives
    a stage its part. Defaults are the library's: no basemap, no parse cache, one
    process. The CLI asks for the OSM basemap, the user cache folder and all cores.
    """

    reading: Reading
    selection: Selection
    drawing: Drawing
    writing: Writing
    map: Basemap

    def __init__(self, *inputs_output, **settings):
        # Python's own TypeError for an unknown setting, or more than inputs and output
        # given by position (__signature__, below).
        try:
            settings = self.__signature__.bind(*inputs_output, **settings).arguments
        except TypeError as err:
            raise TypeError(f"BuildOptions(): {err}") from None
        for part, kind in PARTS.items():
            object.__setattr__(self, part, kind(**{name: value for name, value in
                                                   settings.items() if SETTINGS[name] == part}))
        if self.extent == "regions" and self.scheduler is not None:
            raise ParameterError("--extent regions reads on this machine: not with --scheduler")
        if self.min_zoom is not None and self.zoom is not None and self.min_zoom > self.zoom:
            raise ParameterError(f"min zoom {self.min_zoom} is above the output zoom {self.zoom}")
        if self.explorer is not None and self.scheduler is not None:
            raise ParameterError("--explorer is made on this machine: leave out --scheduler")

    def tile_zoom(self, zoom: int) -> int:
        """The highest level of the tile outputs at output zoom `zoom` (Writing.tile_zoom)."""
        return self.writing.tile_zoom(zoom)

    @property
    def privacy_asked(self) -> bool:
        """Whether any privacy option is given (zones, auto, or hidden ends)."""
        return self.selection.privacy_asked

    @property
    def colormap(self) -> str:
        """The heat's colormap: the one asked for, else the style's."""
        return self.drawing.colormap

    def settings(self) -> dict:
        """Every setting by its flat name, as BuildOptions(**settings) takes them."""
        return {name: getattr(self, name) for name in SETTINGS}

    def replace(self, **changes) -> "BuildOptions":
        """A copy with some settings changed, checked again."""
        return BuildOptions(**{**self.settings(), **changes})


# Each part's settings read flat too (options.zoom is options.drawing.zoom), with the
# values the part computes (options.outputs, options.zones).
for _part, _kind in PARTS.items():
    for _field in fields(_kind):
        setattr(BuildOptions, _field.name, property(attrgetter(f"{_part}.{_field.name}")))
BuildOptions.__signature__ = inspect.Signature(  # inputs and output may come by position
    [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in
                       ("inputs", "output") else inspect.Parameter.KEYWORD_ONLY, default=f.default)
     for f in sorted((f for kind in PARTS.values() for f in fields(kind) if f.init),
                     key=lambda f: f.name not in ("inputs", "output"))])


def _check_privacy(options: Selection, put) -> None:
    """The privacy zones (given and read from privacy_file), auto and hidden ends,
    checked (geoheat.privacy is imported only when they are used)."""
    if options.privacy is not None and options.privacy not in ("auto", "off"):
        raise ParameterError(f"privacy must be auto or off, got {options.privacy!r}")
    put("privacy", None if options.privacy == "off" else options.privacy)
    zones = ()
    if options.privacy_zones or options.privacy_file is not None or options.hide_ends:
        from .privacy_settings import check_hide_ends, check_zone, read_zone_file

        given = options.privacy_zones or ()
        put("privacy_zones", tuple(check_zone(z) for z in
                                   ([given] if isinstance(given, str) else given)) or None)
        zones = options.privacy_zones or ()
        if options.privacy_file is not None:
            put("privacy_file", Path(options.privacy_file))
            zones += read_zone_file(options.privacy_file)
        if options.hide_ends is not None:
            put("hide_ends", check_hide_ends(options.hide_ends))
    put("zones", zones)

