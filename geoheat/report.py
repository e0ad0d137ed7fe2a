"""What a build tells: its result, the one-line summary, and the metadata it writes.

Text only; the numbers come from the stages (activities counts files and points,
the pipeline adds the grid and outputs).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .basemap import BasemapReport
    from .options import BuildOptions
    from .tiles import Grid


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
    points_invalid: int = 0  # not a position on Earth (NaN, |lat| > 90, 0,0, ...)
    points_outside: int = 0  # outside the extent (auto cluster or --bounds)
    points_used: int = 0
    zoom: int | None = None
    grid: "Grid | None" = None
    data_tiles: int = 0  # tiles of the grid with heat
    basemap: "BasemapReport | None" = None
    seconds: float = 0.0

    @property
    def activities(self) -> int:
        """Activities drawn."""
        return sum(self.types.values())


def plural(n: int, noun: str) -> str:
    """'1 route', '2 routes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe_inputs(result: BuildResult) -> str:
    """What happened to the files found, in a few words (why there is nothing to draw)."""
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


def summary(result: BuildResult, extent: str = "auto") -> str:
    """The one-line report of a build."""
    grid = result.grid
    read = f"{plural(result.files_read, 'file')} read"
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
        ignored = (f"; ignored {plural(result.routes, 'route')}, "
                   f"{plural(result.waypoints, 'waypoint')}")
    names = " ".join(str(p) for p in result.outputs if p.suffix != ".qml")
    return (f"geoheat: {read}; {points}{ignored}; zoom {result.zoom}, "
            f"{grid.width}x{grid.height} px; {result.seconds:.1f} s -> {names}")


def geotiff_tags(options: "BuildOptions", result: BuildResult) -> dict[str, object]:
    """The tags recording the run in every GeoTIFF."""
    return {
        "GEOHEAT_VERSION": __version__,
        "ZOOM": result.zoom,
        "SIGMA": options.sigma,
        "SCALING": options.scaling,
        "MODE": options.mode,
        "FILES": result.files_read,
        "POINTS": result.points_used,
        "EXTENT": "bounds" if options.bounds else options.extent,
        "TIFFTAG_SOFTWARE": f"geoheat {__version__}",
    }


def mbtiles_metadata(path: Path, centre_lonlat: tuple[float, float], min_zoom: int,
                     result: BuildResult) -> dict[str, str]:
    """The MBTiles metadata rows geoheat sets beyond GDAL's own."""
    lon, lat = centre_lonlat
    return {
        "name": path.stem,
        "description": f"geoheat heatmap of {plural(result.files_read, 'GPX file')}, "
                       f"{result.points_used:,} points",
        "attribution": f"Heatmap made with geoheat {__version__}",
        "type": "overlay",
        "center": f"{lon:.6f},{lat:.6f},{result.zoom}",
        "minzoom": str(min_zoom),
        "maxzoom": str(result.zoom),
    }
