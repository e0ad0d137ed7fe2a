"""One setting's value, checked: each function takes what a user or script gave and
returns it normalised, or raises ParameterError with one line naming the setting.

Also what this machine allows (its cores bound --jobs and local:N). The parts of
`options.BuildOptions` check themselves with these; other stages reuse them (a blur
radius, a URL input). Only the standard library is imported here, so `geoheat --help`
stays instant.
"""

import importlib.util
import math
import os
import re
from collections.abc import Iterable, Sequence

from .errors import ParameterError

MAX_ZOOM = 19  # OSM's tile servers stop here (tiles.MAX_ZOOM, without importing affine)
MAX_LATITUDE = 85.0511287798066  # where Web Mercator's square world ends (tiles.MAX_LATITUDE)
# Past ~50 px the blur's halo spans many tiles and the work grows as sigma squared
# (200 px took over 5 minutes); no heatmap needs more.
MAX_SIGMA = 50.0


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


def one_of(name: str, value, choices: Sequence[str]):
    """value, if it is one of choices."""
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def whole_number(name: str, value, minimum: int) -> int:
    """value, if it is an int (not a bool) of at least minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def split_types(types: Iterable[str] | None) -> tuple[str, ...] | None:
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


def split_years(years: Iterable[int] | int | None) -> tuple[int, ...] | None:
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
