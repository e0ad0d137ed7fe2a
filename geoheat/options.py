"""Every setting of a build in one object, checked once when it is made.

`BuildOptions` is what the CLI makes from its flags and what `geoheat.build(...)`
makes from its keywords; the pipeline then trusts it. Only the standard library is
imported here, so `geoheat --help` stays instant.
"""

import importlib.util
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from .colormaps import COLORMAP_NAMES, STYLE_NAMES
from .errors import ParameterError
from .output_kinds import output_paths

MAX_ZOOM = 19  # OSM's tile servers stop here (tiles.MAX_ZOOM, without importing affine)
MAX_LATITUDE = 85.0511287798066  # where Web Mercator's square world ends (tiles.MAX_LATITUDE)
MIN_IMAGE_SIZE = 256  # one tile
# Tile outputs reach street zoom by default, whatever the PNG's zoom: a web map shows its
# own pixels there, not stretched ones.
TILE_ZOOM = 16
EXTENTS = ("auto", "all")
BUILD_EXTENTS = EXTENTS + ("regions",)  # one output set per region: build only
MODES = ("lines", "points")
SCALINGS = ("cdf", "linear")
NORMALIZES = ("global", "local")
# Past ~50 px the blur's halo spans many tiles and the work grows as sigma squared
# (200 px took over 5 minutes); no heatmap needs more.
MAX_SIGMA = 50.0
# What one activity file may inflate to (a 2 MB .gpx.gz can hold 2 GiB): a documented
# limit, above any real track (a 24 h ride at 1 s is ~30 MB of GPX).
DEFAULT_MAX_FILE_SIZE = 512 * 2**20
# Basemap download limits (geoheat.basemap's), here so the CLI need not import it.
DEFAULT_MAX_TILES = 300  # a 4096 px image is 256 tiles: any --zoom auto image fits
DEFAULT_TIMEOUT = 10.0  # seconds per tile request
DEFAULT_DEADLINE = 60.0  # seconds for the whole basemap: a trickling server cannot hold a build


def available_cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# fsspec URLs (s3://, gs://, https://, file://, memory://): inputs read on a Dask cluster.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
# A Dask scheduler: 'local:N' (a LocalCluster of N processes here), or an address.
_LOCAL_SCHEDULER = re.compile(r"local:(\d+)$")
# A scheduler's address: PROTOCOL://HOST:PORT or HOST:PORT (HOST may be [IPv6]); Dask's
# other forms fail inside its client with a traceback, so they are refused here.
_SCHEDULER_ADDRESS = re.compile(
    r"(?:(?:tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[\w.-]+):(\d{1,5})$")
# An in-process scheduler (a LocalCluster(processes=False) in a script): its address
# names this process, so only a build from Python in the same process can use one.
_INPROC_ADDRESS = re.compile(r"inproc://[^/]+/(\d+)/\d+$")
NEEDS_DASK = "--scheduler needs the dask extra: pip install 'geoheat[dask]'"


def is_url(item) -> bool:
    """Whether an input is an fsspec URL (kept as a string: a Path would fold its '//')."""
    return isinstance(item, str) and _URL.match(item) is not None


def check_scheduler(scheduler: str) -> str:
    """'local:N' (N worker processes here, 1 to twice the cores) or a Dask scheduler
    address (tcp://host:8786, host:8786, tls://, ws://, wss://, ucx://; inproc:// of this
    process); ParameterError if it cannot be one, or if Dask is not installed."""
    text = str(scheduler).strip()
    local = _LOCAL_SCHEDULER.match(text)
    cores = available_cores()
    if local and not 1 <= int(local.group(1)) <= cores * 2:
        raise ParameterError(f"scheduler local:N needs N of 1-{cores * 2} here ({cores} cores), "
                             f"got {text!r}")
    if not local:
        address = _SCHEDULER_ADDRESS.match(text)
        inproc = _INPROC_ADDRESS.match(text)
        if inproc and int(inproc.group(1)) != os.getpid():
            raise ParameterError(f"scheduler {text!r} is inside another process (inproc:// "
                                 "addresses are for a script's own in-process cluster)")
        if address and not 1 <= int(address.group(2)) <= 65535:
            raise ParameterError(f"scheduler {text!r}: the port must be 1-65535")
        if not (address or inproc):
            raise ParameterError("scheduler must be local:N or a Dask scheduler's address "
                                 f"such as tcp://10.0.0.5:8786, got {scheduler!r}")
    if importlib.util.find_spec("distributed") is None:  # found, not imported
        raise ParameterError(NEEDS_DASK)
    return text


def check_zoom(zoom: int | str | None, what: str = "zoom") -> int | None:
    """An OSM zoom 0-19 as int, or None for 'auto' (also the original script's -1)."""
    if zoom is None or zoom == "auto" or (not isinstance(zoom, bool) and str(zoom).strip() == "-1"):
        return None
    text = str(zoom).strip()
    if isinstance(zoom, bool) or not text.isdigit() or int(text) > MAX_ZOOM:
        raise ParameterError(f"{what} must be 0-{MAX_ZOOM} or 'auto', got {zoom!r}")
    return int(text)


def check_bounds(bounds: Sequence[float]) -> tuple[float, float, float, float]:
    """LAT_MIN LAT_MAX LON_MIN LON_MAX (the original script's order), checked."""
    try:
        lat_min, lat_max, lon_min, lon_max = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ParameterError(
            f"bounds must be four numbers LAT_MIN LAT_MAX LON_MIN LON_MAX, got {bounds!r}"
        ) from None
    if not (-90 <= lat_min <= 90 and -90 <= lat_max <= 90):
        raise ParameterError(f"bounds: latitudes must be within -90..90, got {lat_min}, {lat_max}")
    if not (-180 <= lon_min <= 180 and -180 <= lon_max <= 180):
        raise ParameterError(
            f"bounds: longitudes must be within -180..180, got {lon_min}, {lon_max}")
    if lat_max <= -MAX_LATITUDE or lat_min >= MAX_LATITUDE:
        raise ParameterError(
            f"bounds: latitudes {lat_min}..{lat_max} lie beyond Web Mercator's "
            f"+-{MAX_LATITUDE:.4f} degrees, where no map is drawn")
    if lat_min >= lat_max or lon_min >= lon_max:
        raise ParameterError(
            "bounds: need LAT_MIN < LAT_MAX and LON_MIN < LON_MAX, got "
            f"{lat_min} {lat_max} {lon_min} {lon_max}")
    return lat_min, lat_max, lon_min, lon_max


def check_sigma(sigma: float) -> float:
    """A blur radius: a number 0-MAX_SIGMA pixels."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
        raise ParameterError(f"sigma must be a number 0-{MAX_SIGMA:g}, got {sigma!r}")
    if not 0 <= sigma <= MAX_SIGMA:
        raise ParameterError(f"sigma must be 0-{MAX_SIGMA:g} pixels, got {sigma:g}")
    return float(sigma)


def _one_of(name: str, value, choices: Sequence[str]):
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _whole(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _split_types(types: Iterable[str] | None) -> tuple[str, ...] | None:
    """Activity types from repeated flags and comma lists ('Ride,Run')."""
    if types is None:
        return None
    if isinstance(types, str):
        types = [types]
    found = tuple(t.strip() for item in types for t in str(item).split(",") if t.strip())
    if not found:
        return None
    from .formats import type_filter  # numpy: not for --help

    try:  # Strava's spelling, once each: 'ride,Ride' -> ('Ride',)
        return tuple(dict.fromkeys(type_filter(t) for t in found))
    except ValueError as err:
        raise ParameterError(str(err)) from None


def _years(years: Iterable[int] | int | None) -> tuple[int, ...] | None:
    """Years from repeated flags and comma lists ('2023,2024')."""
    if years is None:
        return None
    if isinstance(years, (int, str)):
        years = [years]
    found = []
    for item in years:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise ParameterError(f"year must be a whole number such as 2024, got {part!r}")
            found.append(int(part))
    return tuple(sorted(set(found))) or None


@dataclass(frozen=True)
class BuildOptions:
    """Every setting of a build; made once, checked once (ParameterError, OutputError).

    Defaults are the library's: no basemap, no parse cache, one process. The CLI
    asks for the OSM basemap, the user cache folder and all cores.
    """

    inputs: tuple[Path, ...] = (Path("gpx"),)  # files, folders, Strava export zips (URLs: str)
    output: Path = Path("heatmap.png")  # names one output (.png, .tif, .mbtiles, .pmtiles);
    # the others share its stem
    # What to draw
    pattern: str | None = None  # glob on file names in folders and zips; None: every activity
    years: tuple[int, ...] | None = None  # keep activities that started in these years
    types: tuple[str, ...] | None = None  # keep these activity types (Strava's names)
    bounds: tuple[float, float, float, float] | None = None  # LAT_MIN LAT_MAX LON_MIN LON_MAX
    extent: str = "auto"  # without bounds: 'auto' (the main area), 'all' or 'regions'
    keep_duplicates: bool = False  # draw the same activity found twice twice
    # How to draw it
    zoom: int | None = None  # None: the largest that fits max_size
    max_size: int = 4096
    mode: str = "lines"  # 'lines': passes per pixel; 'points': track points per pixel
    scaling: str = "cdf"  # 'cdf' (Strava's method) or 'linear'
    normalize: str = "global"  # 'global': one scale for all; 'local': by neighbourhood
    sigma: float = 1.0  # Gaussian blur in pixels
    style: str = "hot"
    cmap: str | None = None  # None: the style's
    # Extra outputs
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
    # The basemap under the PNG
    basemap: str | None = None  # None or 'none', 'osm', an xyzservices name, a URL template
    attribution: str | None = None
    api_key: str | None = None
    tile_cache: Path | None = None
    max_tiles: int = DEFAULT_MAX_TILES
    tile_timeout: float = DEFAULT_TIMEOUT
    basemap_deadline: float = DEFAULT_DEADLINE
    # Reading
    parse_cache: Path | None = None  # None: parse every file, keep nothing
    jobs: int = 1
    scheduler: str | None = None  # read and count on Dask: 'local:N' or an address
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # bytes one activity may take uncompressed
    # Privacy and explorer tiles (geoheat.privacy, geoheat.explorer)
    privacy_zones: tuple | None = None  # zones 'LAT,LON[,RADIUS_M]' (or tuples): nothing drawn
    privacy_file: Path | None = None  # a file of zones, one a line
    privacy: str | None = None  # 'auto': zones where many activities start or end
    hide_ends: float | None = None  # metres hidden at each end (None: 200 with auto, else 0)
    explorer: Path | None = None  # a GeoPackage of the tiles the lines pass through
    explorer_zoom: int = 14
    # Telling
    report: Path | None = None  # a JSON report of the build, file by file
    verbose: bool = False  # a warning line for every file, not one per reason
    outputs: dict = field(init=False, repr=False, compare=False)  # kind -> Path
    zones: tuple = field(init=False, repr=False, compare=False)  # given and from privacy_file

    def __post_init__(self):
        def put(name, value):  # frozen: normalised values are set once, here
            object.__setattr__(self, name, value)

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
        put("output", Path(self.output))
        put("years", _years(self.years))
        put("types", _split_types(self.types))
        if self.bounds is not None:
            put("bounds", check_bounds(self.bounds))
        _one_of("extent", self.extent, BUILD_EXTENTS)
        if self.extent == "regions" and self.scheduler is not None:
            raise ParameterError("--extent regions reads on this machine: not with --scheduler")
        put("zoom", check_zoom(self.zoom))
        put("min_zoom", check_zoom(self.min_zoom, "min zoom"))
        put("max_zoom", check_zoom(self.max_zoom, "max zoom"))
        if self.min_zoom is not None and self.max_zoom is not None \
                and self.min_zoom > self.max_zoom:
            raise ParameterError(f"min zoom {self.min_zoom} is above max zoom {self.max_zoom}")
        if self.min_zoom is not None and self.zoom is not None and self.min_zoom > self.zoom:
            raise ParameterError(f"min zoom {self.min_zoom} is above the output zoom {self.zoom}")
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int) \
                or self.max_size < MIN_IMAGE_SIZE:
            raise ParameterError(
                f"max size must be at least {MIN_IMAGE_SIZE} pixels, got {self.max_size!r}")
        _one_of("mode", self.mode, MODES)
        _one_of("scaling", self.scaling, SCALINGS)
        _one_of("normalize", self.normalize, NORMALIZES)
        if self.png is not None and not isinstance(self.png, bool):
            raise ParameterError(f"png must be True, False or None, got {self.png!r}")
        if not isinstance(self.csv_min, (int, float)) or isinstance(self.csv_min, bool) \
                or not 0 <= self.csv_min < 1:
            raise ParameterError(f"csv min must be a heat 0-1 (below 1), got {self.csv_min!r}")
        put("sigma", check_sigma(self.sigma))
        _one_of("style", self.style, STYLE_NAMES)
        if self.cmap is not None:
            _one_of("cmap", self.cmap, COLORMAP_NAMES)
        if self.basemap is not None and self.basemap.strip().lower() == "none":
            put("basemap", None)
        _whole("max tiles", self.max_tiles, 1)
        for name in ("tile_timeout", "basemap_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < math.inf:
                raise ParameterError(
                    f"{name.replace('_', ' ')} must be > 0 seconds, got {value!r}")
        _whole("jobs", self.jobs, 1)
        _whole("max file size", self.max_file_size, 1)
        cores = available_cores()
        if self.jobs > max(cores, 1) * 2:
            # Reading is CPU-bound: more processes than cores only cost memory
            # (64 on 2 cores started 68 processes and 5 GB).
            raise ParameterError(
                f"jobs must be 1-{cores * 2} here ({cores} cores), got {self.jobs}")
        for name in ("mbtiles", "pmtiles", "tile_cache", "parse_cache", "report", "explorer"):
            value = getattr(self, name)
            put(name, None if value is None else Path(value))
        _check_privacy(self, put)
        put("outputs", output_paths(self))

    def tile_zoom(self, zoom: int) -> int:
        """The highest level of the tile outputs (--mbtiles, --pmtiles, --site) of a build
        at output zoom `zoom`: --max-zoom, else street zoom (TILE_ZOOM) or the output's
        own if higher."""
        return self.max_zoom if self.max_zoom is not None else max(TILE_ZOOM, zoom)

    @property
    def privacy_asked(self) -> bool:
        """Whether any privacy option is given (zones, auto, or hidden ends)."""
        return bool(self.zones) or self.privacy == "auto" or bool(self.hide_ends)

    @property
    def colormap(self) -> str:
        """The heat's colormap: the one asked for, else the style's."""
        from .colormaps import STYLES

        return self.cmap or STYLES[self.style].cmap

    def replace(self, **changes) -> "BuildOptions":
        """A copy with some settings changed, checked again."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return BuildOptions(**{**values, **changes})


def _check_privacy(options: BuildOptions, put) -> None:
    """The privacy zones (given and read from privacy_file), auto, hidden ends and the
    explorer's zoom, checked (geoheat.privacy is imported only when they are used)."""
    if options.privacy is not None and options.privacy not in ("auto", "off"):
        raise ParameterError(f"privacy must be auto or off, got {options.privacy!r}")
    put("privacy", None if options.privacy == "off" else options.privacy)
    zones = ()
    if options.privacy_zones or options.privacy_file is not None or options.hide_ends:
        from .privacy import check_hide_ends, check_zone, read_zone_file

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
    explorer_zoom = check_zoom(options.explorer_zoom, "explorer zoom")
    if explorer_zoom is None:
        raise ParameterError(f"explorer zoom must be 0-{MAX_ZOOM}, got {options.explorer_zoom!r}")
    put("explorer_zoom", explorer_zoom)
    if options.explorer is not None and options.scheduler is not None:
        raise ParameterError("--explorer is made on this machine: leave out --scheduler")

