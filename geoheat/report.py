"""What a build tells: its result, the one-line summary, and the metadata it writes.

Text only; the numbers come from the stages (activities counts files and points,
the pipeline adds the grid and outputs).
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import __version__
from .formats import UNTYPED

if TYPE_CHECKING:
    from .basemap import BasemapReport
    from .cache import ParsedFile
    from .options import BuildOptions
    from .tiles import Grid


# Warnings about many files are grouped by reason: one line names this many, then counts.
NAMES_PER_WARNING = 3


class FileEntry(NamedTuple):
    """What became of one file (or zip member): drawn, skipped, duplicate or left_out."""

    path: str
    status: str
    reason: str | None
    format: str
    type: str | None
    start: str | None  # ISO 8601
    points: int

    @classmethod
    def of(cls, parsed: "ParsedFile", status: str, reason: str | None = None) -> "FileEntry":
        start = parsed.start.isoformat() if parsed.start else None
        return cls(parsed.name, status, reason, parsed.format, parsed.activity_type, start,
                   parsed.points)


class RegionEntry(NamedTuple):
    """One region the activities visit (--extent regions draws each; auto, the first)."""

    name: str  # the biggest town there ('Chengdu, CN'), places.name_area
    activities: int  # drawn there; for a region not drawn, the activities only there
    bounds: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max
    outputs: list[str]  # its files ([] for a region not drawn)
    where: str = ""  # its centre: '30.66N 104.07E'


@dataclass
class BuildResult:
    """What a build read, what it left out, and what it wrote."""

    outputs: list[Path] = field(default_factory=list)
    files: int = 0  # files found
    files_read: int = 0  # files read with at least one track point
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why): unreadable...
    notes: list[str] = field(default_factory=list)  # files that broke off, partly read
    time_notes: list[tuple[str, str]] = field(default_factory=list)  # (file, why no start)
    left_out: Counter = field(default_factory=Counter)  # activities left out, by reason
    duplicates: int = 0  # the same activity again (start time and place), counted once
    types: Counter = field(default_factory=Counter)  # activities drawn, by Strava type
    formats: Counter = field(default_factory=Counter)  # activities drawn, by file format
    routes: int = 0  # routes and waypoints: not activities, ignored
    waypoints: int = 0
    points_read: int = 0
    points_invalid: int = 0  # not a position on Earth (NaN, |lat| > 90, 0,0, ...)
    points_outside: int = 0  # outside the extent (auto area or --bounds)
    points_left_out: int = 0  # of activities left out (years, types) or duplicates
    points_used: int = 0
    points_hidden: int = 0  # hidden by privacy zones or hidden ends (geoheat.privacy)
    privacy: dict | None = None  # counts only: zones, activities touched, points hidden
    explorer: dict | None = None  # the explorer score: tiles, max_square, max_cluster
    zoom: int | None = None
    grid: "Grid | None" = None
    data_tiles: int = 0  # tiles of the grid with heat
    tiles: object = None  # write_outputs.TileSet: the heat tiles, when run(keep_tiles=True)
    counts_cached: bool = False  # the counts came from the counts cache (countcache.py)
    basemap: "BasemapReport | None" = None
    seconds: float = 0.0
    entries: list[FileEntry] = field(default_factory=list)  # one per file, for --report
    regions: list[RegionEntry] = field(default_factory=list)  # the drawn one(s) first

    @property
    def activities(self) -> int:
        """Activities drawn."""
        return sum(self.types.values())


def plural(n: int, noun: str) -> str:
    """'1 route', '2 routes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _kind_of(reason: str) -> str:
    """A reason without its particulars, to group files by: 'broken or truncated XML
    (mismatched tag: line 3)' -> 'broken or truncated XML'."""
    return reason.split(" (", 1)[0].strip() or reason


def warnings(result: BuildResult, verbose: bool = False) -> Iterator[str]:
    """The warning lines of a build: files skipped and files broken off, one line per
    reason naming the first few files (every file on its own line when verbose)."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for entry in result.entries:
        if entry.status == "skipped":
            line = f"skipped {entry.path}: {entry.reason}"
            groups["skipped", _kind_of(entry.reason or "")].append((entry.path, line))
    for note in result.notes:
        name, _, what = note.partition(": ")
        kind = ("broken off, kept what came before the break" if what.startswith("broken off")
                else _kind_of(what))  # e.g. 'coordinates that are not numbers'
        groups["partly read", kind].append((name, note))
    for name, why in result.time_notes:
        groups["found no time in", "implausible times, counted as no time"].append(
            (name, f"{name}: {why}; counted as no time"))
    for (verb, kind), files in groups.items():
        if verbose or len(files) == 1:
            yield from (line for _, line in files)
            continue
        names = ", ".join(name for name, _ in files[:NAMES_PER_WARNING])
        more = len(files) - NAMES_PER_WARNING
        tail = f" and {more} more (--verbose lists them)" if more > 0 else ""
        yield f"{verb} {plural(len(files), 'file')}: {kind}: {names}{tail}"


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
        read += f", {plural(result.duplicates, 'duplicate')} dropped"
    if len(result.types) > 1 or UNTYPED not in result.types:
        read += " (" + ", ".join(f"{n} {kind}" for kind, n in result.types.most_common())
        read += "; " + ", ".join(f"{n} {fmt.upper()}" for fmt, n in sorted(result.formats.items()))
        read += ")"
    points = f"{result.points_used:,} points used"
    if result.points_outside:
        hint = " (--extent all keeps them)" if extent == "auto" else ""
        points += f", {result.points_outside:,} outside the extent{hint}"
    if result.points_invalid:
        points += f", {result.points_invalid:,} invalid"
    if result.privacy is not None:
        points += (f", {result.points_hidden:,} hidden by privacy "
                   f"({plural(result.privacy['zones'], 'zone')})")
    if result.explorer is not None:
        found = result.explorer
        points += (f"; explorer: {plural(found['tiles'], 'tile')}, max square "
                   f"{found['max_square']}, max cluster {found['max_cluster']}")
    ignored = ""
    if result.routes or result.waypoints:
        ignored = (f"; ignored {plural(result.routes, 'route')}, "
                   f"{plural(result.waypoints, 'waypoint')}")
    if extent == "regions":
        first = result.regions[0] if result.regions else None
        names = " ".join(_named(first.outputs)) if first else ""
        lines = [f"geoheat: {read}; {points}{ignored}; {result.seconds:.1f} s; "
                 f"{plural(len(result.regions), 'region')}"]
        lines += [f"geoheat: {region.name} ({region.where}): "
                  f"{region.activities} {'activity' if region.activities == 1 else 'activities'}"
                  f" -> {' '.join(_named(region.outputs))}"
                  for region in result.regions]
        return "\n".join(lines)
    names = " ".join(_named(result.outputs))
    return (f"geoheat: {read}; {points}{ignored}{_elsewhere(result, extent)}; "
            f"zoom {result.zoom}, {grid.width}x{grid.height} px; {result.seconds:.1f} s -> "
            f"{names}")


def _named(outputs) -> list[str]:
    """The outputs the summary line names: the files one opens, not the QGIS style nor
    the files written beside an output (writers.side_files: a PNG's .pgw, .aux.xml)."""
    from .writers import side_files

    paths = [Path(p) for p in outputs]
    beside = {side for path in paths for side in side_files(path)[1:]}
    return [str(p) for p in paths if p.suffix != ".qml" and p not in beside]


def _elsewhere(result: BuildResult, extent: str) -> str:
    """The regions an auto extent left out, with their activities and where they are,
    and how many of those left out are one-off trips (in no region: too few there)."""
    others = result.regions[1:] if extent == "auto" else []
    outside = result.left_out.get("outside the extent", 0) if extent == "auto" else 0
    one_off = max(outside - sum(r.activities for r in others), 0)
    if not others and not one_off:
        return ""
    parts = [f"{r.activities} in {r.name} ({r.where})" for r in others[:3]]
    if len(others) > 3:
        parts.append(f"{sum(r.activities for r in others[3:])} in {len(others) - 3} more "
                     "regions")
    if one_off:
        parts.append(f"{one_off} one-off elsewhere")
    how = ("--extent regions draws each region, --extent all everything" if others and one_off
           else "--extent regions draws each" if others else "--extent all draws them")
    return f"; left out, activities elsewhere: {', '.join(parts)} ({how})"


def activity_dates(result: BuildResult) -> tuple[str | None, str | None]:
    """The first and last start dates (YYYY-MM-DD) of the activities drawn."""
    starts = sorted(e.start[:10] for e in result.entries if e.status == "drawn" and e.start)
    return (starts[0], starts[-1]) if starts else (None, None)


def _filters(options: "BuildOptions") -> dict[str, str]:
    """The selection a build made, as text: years, types, bounds ('all' where none)."""
    return {
        "FILTER_YEARS": ",".join(map(str, options.years)) if options.years else "all",
        "FILTER_TYPES": ",".join(options.types) if options.types else "all",
        "FILTER_BOUNDS": " ".join(f"{v:g}" for v in options.bounds) if options.bounds else "none",
    }


def _drawn(result: BuildResult) -> str:
    """'7 activities (5 Run, 2 Ride; 6 GPX, 1 FIT)'."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in result.types.most_common())
    formats = ", ".join(f"{n} {fmt.upper()}" for fmt, n in sorted(result.formats.items()))
    detail = "; ".join(part for part in (kinds, formats) if part)
    n = result.activities
    return f"{n} {'activity' if n == 1 else 'activities'}" + (f" ({detail})" if detail else "")


def geotiff_tags(options: "BuildOptions", result: BuildResult) -> dict[str, object]:
    """The tags recording the run in every GeoTIFF: settings, and what was drawn (the
    activities, not the files read: filters leave files out)."""
    first, last = activity_dates(result)
    return {
        "GEOHEAT_VERSION": __version__,
        "ZOOM": result.zoom,
        "SIGMA": options.sigma,
        "SCALING": options.scaling,
        "NORMALIZE": options.normalize,
        "MODE": options.mode,
        "ACTIVITIES": result.activities,
        "ACTIVITY_TYPES": ",".join(f"{k}:{n}" for k, n in result.types.most_common()),
        "FORMATS": ",".join(f"{k}:{n}" for k, n in sorted(result.formats.items())),
        "FIRST_ACTIVITY": first or "",
        "LAST_ACTIVITY": last or "",
        **_filters(options),
        "FILES": result.files_read,
        "POINTS": result.points_used,
        "EXTENT": "bounds" if options.bounds else options.extent,
        **({"PRIVACY": privacy_text(result)} if result.privacy is not None else {}),
        "TIFFTAG_SOFTWARE": f"geoheat {__version__}",
    }


def mbtiles_metadata(path: Path, centre_lonlat: tuple[float, float], min_zoom: int,
                     result: BuildResult, options: "BuildOptions | None" = None,
                     bounds_lonlat: tuple[float, float, float, float] | None = None,
                     centre_zoom: int | None = None) -> dict[str, str]:
    """The metadata of the MBTiles (and PMTiles): what MBTiles 1.3 asks for, and what was
    drawn: the activities (by type and format), their dates and the filters."""
    lon, lat = centre_lonlat
    first, last = activity_dates(result)
    dates = f", {first} to {last}" if first else ""
    n = result.activities
    years = f", {first[:4]}" + (f"-{last[:4]}" if last[:4] != first[:4] else "") if first else ""
    metadata = {
        # A name a map viewer can list; the file's stem still names the file.
        "name": f"{path.stem}: heat of {n} {'activity' if n == 1 else 'activities'}{years}",
        "format": "png",
        "description": f"geoheat heatmap of {_drawn(result)}{dates}, "
                       f"{result.points_used:,} points",
        "attribution": f"Heatmap made with geoheat {__version__}",
        "type": "overlay",
        # MBTiles 1.3: the tileset's own revision (a number), not the spec's: the newest
        # activity's date, so a tileset with newer activities has a higher one.
        "version": last.replace("-", "") if last else "1",
        "center": f"{lon:.6f},{lat:.6f},{centre_zoom if centre_zoom is not None else result.zoom}",
        "minzoom": str(min_zoom),
        "maxzoom": str(result.zoom),
        "activities": str(result.activities),
        "first_activity": first or "",
        "last_activity": last or "",
    }
    if bounds_lonlat is not None:
        metadata["bounds"] = ",".join(f"{v:.6f}" for v in bounds_lonlat)
    if options is not None:
        metadata.update({k.lower(): v for k, v in _filters(options).items()})
    if result.privacy is not None:
        metadata["privacy"] = privacy_text(result)
    return metadata


def privacy_text(result: BuildResult) -> str:
    """What privacy hid, as counts only (never where): 'zones=2 activities_touched=40
    points_hidden=1234 hide_ends_m=200'."""
    found = result.privacy
    return " ".join(f"{key}={found[key]:g}" for key in (
        "zones", "activities_touched", "points_hidden", "hide_ends_m"))


def to_json(result: BuildResult, bounds_lonlat: tuple[float, float, float, float] | None) -> str:
    """The --report document: what a build found, drew, left out and wrote, file by file."""
    statuses = Counter(entry.status for entry in result.entries)
    grid = result.grid
    document = {
        "activities": {
            "found": result.files, "drawn": statuses["drawn"],
            "duplicates": result.duplicates, "skipped": len(result.skipped),
            "left_out": dict(sorted(result.left_out.items())),
            "by_type": dict(result.types.most_common()),
            "by_format": dict(sorted(result.formats.items())),
        },
        "points": {"read": result.points_read, "used": result.points_used,
                   "outside": result.points_outside, "invalid": result.points_invalid,
                   "left_out": result.points_left_out,
                   **({"hidden": result.points_hidden} if result.privacy is not None else {})},
        "privacy": result.privacy,
        "explorer": result.explorer,
        "zoom": result.zoom,
        "size": [grid.width, grid.height] if grid else None,
        "tiles": result.data_tiles,
        "bounds": [round(v, 7) for v in bounds_lonlat] if bounds_lonlat else None,
        "outputs": [str(p) for p in result.outputs],
        "counts_from_cache": result.counts_cached,
        "seconds": round(result.seconds, 3),
        "regions": [{"name": r.name, "activities": r.activities,
                     "bounds": [round(v, 7) for v in r.bounds], "outputs": r.outputs}
                    for r in result.regions],
        "files": [entry._asdict() for entry in result.entries],
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"
