"""Read GPX tracks with fiona (GDAL's GPX driver).

An activity is one GPX file's tracks: every track segment is kept as its own
(n, 2) array of longitude, latitude, so a gap between segments is never drawn.
"""

import re
import xml.parsers.expat
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import GPXError

# Enough of a file's head to hold <metadata> and the first trackpoint.
HEAD_BYTES = 64 * 1024

_TAG = rb"(?:[\w.-]+:)?"  # an optional namespace prefix
_FIRST_DATA = re.compile(rb"<" + _TAG + rb"(?:trk|rte|wpt)[\s>/]")
_FIRST_TRACK = re.compile(rb"<" + _TAG + rb"trk[\s>]")
_TIME = re.compile(rb"<" + _TAG + rb"time>\s*([^<\s]+)\s*</")
_TRKPT = re.compile(rb"<" + _TAG + rb"trkpt[\s>].*?</" + _TAG + rb"trkpt>", re.S)
_ROUTE = re.compile(rb"<" + _TAG + rb"rte[\s>]")
_WAYPOINT = re.compile(rb"<" + _TAG + rb"wpt[\s>]")


class Activity(NamedTuple):
    """One activity's tracks: segments of (lon, lat), the start time and sport, if any."""

    path: Path | str
    segments: list[np.ndarray]
    start: datetime | None
    routes: int
    waypoints: int
    sport: str | None = None  # as the file names it (see formats.activity_type)

    @property
    def points(self) -> int:
        """Number of trackpoints in all segments."""
        return sum(len(s) for s in self.segments)


def parse_time(text: bytes | str) -> datetime | None:
    """An ISO 8601 GPX time as a datetime, or None if it is not one."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def start_time(data: bytes) -> datetime | None:
    """An activity's start: the GPX header's <time>, else the first trackpoint's."""
    first = _FIRST_DATA.search(data)
    header = data[: first.start()] if first else data
    # GPX 1.1 puts it in <metadata>, GPX 1.0 straight under <gpx>: both are header.
    match = _TIME.search(header)
    if match is None:
        trkpt = _TRKPT.search(data)
        match = _TIME.search(trkpt.group()) if trkpt else None
    return parse_time(match.group(1)) if match else None


def _why_unreadable(data: bytes) -> str:
    """A one-line reason why GDAL could not open a file."""
    if not data.strip():
        return "empty file"
    if b"<gpx" not in data[:HEAD_BYTES]:
        return "not a GPX file (no <gpx> element)"
    parser = xml.parsers.expat.ParserCreate()
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as err:
        return f"broken or truncated XML ({err})"
    return "GDAL's GPX driver cannot read it"


def read_gpx(path: str | Path) -> Activity:
    """Read one GPX file's track segments; raise GPXError if it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise GPXError(f"{path}: cannot read ({err.strerror})") from None
    return read_gpx_bytes(data, path)


def read_gpx_bytes(data: bytes, name: str | Path) -> Activity:
    """Read GPX track segments from bytes (named `name` in messages); GPXError if unreadable."""
    from fiona.io import MemoryFile  # imported here: a rebuild from the parse cache never needs it

    segments, sport = [], None
    try:
        with MemoryFile(data, ext=".gpx") as memory, memory.open(
                layer="tracks", driver="GPX") as layer:
            for feature in layer:
                sport = sport or feature.properties.get("type")
                geometry = feature.geometry
                if geometry is None:
                    continue
                for line in geometry.coordinates:
                    if len(line):
                        segments.append(np.asarray(line, dtype=np.float64)[:, :2])
    except Exception as err:  # fiona raises several types for one cause
        if isinstance(err, (KeyboardInterrupt, MemoryError)):
            raise
        raise GPXError(f"{name}: {_why_unreadable(data)}") from None
    # GPX puts waypoints and routes before tracks: counting them there spares a
    # scan of the (much larger) track data.
    first_track = _FIRST_TRACK.search(data)
    before_tracks = data[: first_track.start()] if first_track else data
    return Activity(
        name,
        segments,
        start_time(data[:HEAD_BYTES]) or (start_time(data) if segments else None),
        len(_ROUTE.findall(before_tracks)),
        len(_WAYPOINT.findall(before_tracks)),
        sport,
    )
