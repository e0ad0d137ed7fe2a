"""Read GPX tracks with fiona (GDAL's GPX driver).

An activity is one GPX file's tracks: every track segment is kept as its own
(n, 2) array of longitude, latitude, so a gap between segments is never drawn.
GDAL rejects a whole file for one break (a truncated download, a cut copy), so
then a streaming expat parse keeps the points before the break, and says so.

Every scan of the bytes here is linear: one odd file (self-closing <trkpt/>
without <time>) must not take minutes.
"""

import re
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .coordinates import BAD_COORDINATE, bad_coordinates_note, maybe_misread
from .errors import GPXError
from .gpx_stream import stream_tracks
from .times import parse_time, plausible_start, posix_times

# Enough of a file's head to hold <metadata> and the first trackpoint.
HEAD_BYTES = 64 * 1024

_TAG = rb"(?:[\w.-]{1,64}:)?"  # an optional namespace prefix (bounded: scans stay linear)
_FIRST_DATA = re.compile(rb"<" + _TAG + rb"(?:trk|rte|wpt)[\s>/]")
_FIRST_TRACK = re.compile(rb"<" + _TAG + rb"trk[\s>]")
# A time's text: RFC 3339 allows a space for the 'T' ('2024-05-01 10:00:00Z').
_TIME_TEXT = rb"([^<\s]{1,64}(?: [^<\s]{1,64})?)"
_TIME = re.compile(rb"<" + _TAG + rb"time>\s*" + _TIME_TEXT + rb"\s*</")
_TRKPT_OPEN = re.compile(rb"<" + _TAG + rb"trkpt[\s>/]")
_GPX_ROOT = re.compile(rb"<" + _TAG + rb"gpx[\s>/]")
_ROUTE = re.compile(rb"<" + _TAG + rb"rte[\s>]")
_WAYPOINT = re.compile(rb"<" + _TAG + rb"wpt[\s>]")
# The tokens that give each trackpoint its time: <trkpt ...> or <trkpt .../>,
# </trkpt>, <trkseg>, and <time>TEXT</time>.
_POINT_TOKENS = re.compile(
    rb"<(/?)" + _TAG + rb"(trkpt|trkseg|time)(?=[\s>/])[^<>]{0,4096}?(/?)>"
    rb"(?:(?<=time>)\s*" + _TIME_TEXT + rb"\s*<)?")
# A <trkpt> whose first child is its <time> (after an <ele>, as GPX 1.1 orders them):
# pairs a point with its time in one C-speed pass. Found once per point -> paired.
_PLAIN_TIME = re.compile(
    rb"<trkpt\b[^>]*(?<!/)>\s*(?:<ele>[^<]{0,64}</ele>\s*)?<time>\s*" + _TIME_TEXT
    + rb"\s*</time>")
# A time whose datetime and POSIX seconds agree to the microsecond both ways (UTC,
# whole microseconds at most): the start it gives is the same however it is read.
_UTC_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z\Z")
# A trackpoint's <extensions> as devices write it, its last child: up to 32 elements of
# short plain ASCII text (numbers, words) in one element, each closed by its own name,
# XML's whitespace between them (not \s: a vertical tab is no XML); nothing else
# matches. Every run bounded, and possessive (+: what follows a run can never be in it,
# so nothing is given back): a match is tried in bounded time wherever it starts.
_NAME = rb"[A-Za-z_][\w.:-]{0,63}+"  # an XML name (GDAL's expat does not split prefixes)
_SPACE = rb"[ \t\r\n]{0,64}+"
_EXTENSIONS = (rb"<extensions>" + _SPACE + rb"<(" + _NAME + rb")>(?:" + _SPACE + rb"<(" + _NAME
               + rb")>[-+.\w ]{0,64}+</\2>){0,32}+" + _SPACE + rb"</\1>" + _SPACE
               + rb"</extensions>")
_POINT_END = rb"(?=" + _SPACE + rb"</trkpt>)"
_POINT_EXTENSIONS = re.compile(_EXTENSIONS + _POINT_END)
# A trackpoint's children after its position as most devices write them, up to its end:
# <ele>, <time> (plain number and time characters), then maybe its <extensions>; and
# (apps that keep no elevation) the same without <ele>.
_TIME_ON = (rb"<time>[-+.:0-9TZtz]{1,40}+</time>" + _SPACE + rb"(?:" + _EXTENSIONS + rb")?"
            + _POINT_END)
_POINT_DETAILS = re.compile(rb"<ele>[-+.0-9eE]{1,32}+</ele>" + _SPACE + _TIME_ON)
_POINT_TIME = re.compile(_TIME_ON)
_ENCODING = re.compile(rb"""^(<\?xml[^>]*?encoding\s*=\s*)(["'])[\w.:-]+\2""")


class Activity(NamedTuple):
    """One activity's tracks: segments of (lon, lat), the start time and sport, if any."""

    path: Path | str
    segments: list[np.ndarray]
    start: datetime | None
    routes: int
    waypoints: int
    sport: str | None = None  # as the file names it (see formats.activity_type)
    # Per segment, each point's time in POSIX seconds (NaN where a point has none);
    # None if the file gives no point a time (or they cannot be paired with points).
    times: list[np.ndarray] | None = None
    # Why the file's time was not used as the start (e.g. "time 1970-01-01 is
    # implausible"); then start is None.
    time_note: str | None = None

    @property
    def points(self) -> int:
        """Number of trackpoints in all segments."""
        return sum(len(s) for s in self.segments)


def xml_bytes(data: bytes, strict: bool = True) -> bytes:
    """XML bytes as expat and GDAL take them: UTF-8, no BOM, nothing before the first '<'.

    A UTF-16 file (BOM, or '<' with a zero byte) is decoded and its declaration
    made to say UTF-8. strict=False decodes a possibly cut head without failing.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:2] in (b"<\x00", b"\x00<"):
        codec = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else (
            "utf-16-le" if data[:1] == b"<" else "utf-16-be")
        if not strict:
            data = data[: len(data) // 2 * 2]
        try:
            text = data.decode(codec, "strict" if strict else "ignore").lstrip("\ufeff")
        except UnicodeDecodeError:
            text = data.decode(codec, "replace").lstrip("\ufeff")  # expat says where it breaks
        data = _ENCODING.sub(rb"\1\2UTF-8\2", text.lstrip().encode("utf-8"), count=1)
        return data
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    if data[:1].isspace():  # blank lines before <?xml: an XML error, a common one
        data = data.lstrip()
    return data


def start_time(data: bytes) -> datetime | None:
    """An activity's start: its first trackpoint's time, else the header's <time>.

    The header (GPX 1.1 <metadata>, GPX 1.0 straight under <gpx>) often holds when
    a converter wrote the file, not when the activity started.
    """
    track = _FIRST_TRACK.search(data)
    if track is not None:
        point = _TRKPT_OPEN.search(data, track.start())
        match = _TIME.search(data, point.start()) if point else None
        if match is not None:
            return parse_time(match.group(1))
    first = _FIRST_DATA.search(data)
    header = data[: first.start()] if first else data
    match = _TIME.search(header)
    return parse_time(match.group(1)) if match else None


def _point_times(data: bytes, track_at: int, lengths: list[int]) -> list[np.ndarray] | None:
    """Each track point's time, one array per segment of `lengths` points; None if the
    file has no point times or they cannot be paired with the points one to one.

    Garmin-style files (<trkpt><ele/><time/>, no prefix) are paired by one regex pass
    (C-speed); others by one linear pass over the trkpt/time tags.
    """
    total = sum(lengths)
    if total == 0 or data.find(b"time>", track_at) < 0:
        return None
    # Counted from track_at, not on a slice: a copy of the file costs as much as a count.
    texts = _PLAIN_TIME.findall(data, track_at)
    if len(texts) == total:
        flat = posix_times(texts)
    else:
        body = data[track_at:]
        texts: list[bytes | None] = []
        inside = False
        for close, tag, selfclose, text in _POINT_TOKENS.findall(body):
            if tag == b"trkpt":
                if close:
                    inside = False
                else:
                    texts.append(None)
                    inside = not selfclose
            elif tag == b"time" and inside and not close and texts[-1] is None:
                texts[-1] = text or b""
            elif tag == b"trkseg":
                inside = False
        if len(texts) != total or not any(texts):
            return None
        flat = np.full(total, np.nan)
        timed = [i for i, t in enumerate(texts) if t]
        flat[timed] = posix_times([texts[i] for i in timed])
    if np.isnan(flat).all():
        return None
    return np.split(flat, np.cumsum(lengths)[:-1])


def _first_point_start(data: bytes, track_at: int) -> datetime | None:
    """The first trackpoint's time, where it is surely the start _start_of would give
    with the paired times or without: else None.

    Surely: the first <trkpt> after the first <trk> is a Garmin-style one (_PLAIN_TIME,
    the first of _point_times' pairs, so point 0's time whichever way it pairs), within
    HEAD_BYTES (where start_time finds it when the points do not pair), and its time is
    plain UTC in whole microseconds (so its POSIX seconds give this same datetime back)
    and plausible (years in which a float holds microseconds).
    """
    point = _TRKPT_OPEN.search(data, track_at)
    if point is None or data.find(b"<trkpt", track_at, point.start()) >= 0:
        return None  # no point; or an odd '<trkpt-' tag _PLAIN_TIME would pair first
    match = _PLAIN_TIME.match(data, point.start())
    if match is None or match.end() > HEAD_BYTES or not _UTC_TIME.match(match.group(1)):
        return None
    when = parse_time(match.group(1))
    return when if plausible_start(when)[1] is None else None


def read_gpx(path: str | Path) -> Activity:
    """Read one GPX file's track segments; raise GPXError if it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise GPXError(f"{path}: cannot read ({err.strerror})") from None
    return read_gpx_bytes(data, path)


def read_gpx_bytes(data: bytes, name: str | Path, *, times: bool = True) -> Activity:
    """Read GPX track segments from bytes (named `name` in messages); GPXError if unreadable.

    A file broken off after some points gives those points (read_gpx_data says so).
    """
    return read_gpx_data(data, name, times=times)[0]


def _start_of(times: list[np.ndarray] | None, data: bytes, has_points: bool
              ) -> tuple[datetime | None, str | None]:
    start = None
    if times is not None:
        finite = [t[np.isfinite(t)] for t in times]
        first = next((t[0] for t in finite if len(t)), None)
        if first is not None:
            start = datetime.fromtimestamp(float(first), timezone.utc)
    if start is None:
        start = start_time(data[:HEAD_BYTES]) or (start_time(data) if has_points else None)
    return plausible_start(start)


TimesWanted = bool | Callable[[list[np.ndarray]], bool]


def read_gpx_data(data: bytes, name: str | Path, *, times: TimesWanted = True
                  ) -> tuple[Activity, str | None]:
    """A GPX file's tracks, and a note if it broke off and only its start was kept.

    times=True pairs each point with its time (Activity.times). Pairing costs a scan of
    the whole file, so times=False pairs them only where the start needs them, and a
    callable only then or where times(segments) is true: Activity.times may then be
    None though the file has point times. The start is the same whatever times says.
    A file only the streaming parse reads has its times either way (that parse reads
    them anyway).
    """
    data = xml_bytes(data)
    lean = lean_gpx(data)
    try:
        try:
            segments, sport = _gdal_tracks(lean)
        except Exception:
            if lean is data:
                raise
            segments, sport = _gdal_tracks(data)  # what GDAL says of the file as it is
    except Exception as err:  # fiona raises several types for one cause
        if isinstance(err, (KeyboardInterrupt, MemoryError)):
            raise
        return _read_broken(data, name)
    if maybe_misread(segments) and BAD_COORDINATE.search(data):
        return _read_broken(data, name)  # GDAL read '46,0500' as 46: read it strictly
    # GPX puts waypoints and routes before tracks: counting them there spares a
    # scan of the (much larger) track data.
    first_track = _FIRST_TRACK.search(data)
    before_tracks = data[: first_track.start()] if first_track else data
    track_at = first_track.start() if first_track else 0
    point_times, quick_start = None, None
    if segments and times is not True:
        quick_start = _first_point_start(data, track_at)
    if segments and (quick_start is None or (callable(times) and times(segments))):
        point_times = _point_times(data, track_at, [len(s) for s in segments])
    if point_times is None and quick_start is not None:
        start, time_note = quick_start, None  # what the paired times would give (see above)
    else:
        start, time_note = _start_of(point_times, data, bool(segments))
    return Activity(
        name,
        segments,
        start,
        len(_ROUTE.findall(before_tracks)),
        len(_WAYPOINT.findall(before_tracks)),
        sport,
        point_times,
        time_note,
    ), None


def _gdal_tracks(data: bytes) -> tuple[list[np.ndarray], str | None]:
    """The tracks' segments as GDAL's GPX driver reads them, and the first track's type;
    fiona's error if it cannot."""
    from fiona.io import MemoryFile  # imported here: a rebuild from the parse cache never needs it

    segments, sport = [], None
    with MemoryFile(data, ext=".gpx") as memory, memory.open(
            layer="tracks", driver="GPX") as layer:
        for feature in layer:
            sport = sport or feature.properties.get("type")
            geometry = feature.geometry
            if geometry is None:
                continue
            for line in geometry.coordinates:
                if len(line):
                    segments.append(_line_array(line))
    return segments, sport


def lean_gpx(data: bytes) -> bytes:
    """GPX bytes with only what GDAL's tracks are made of: without each trackpoint's
    <ele>, <time> and <extensions> (heart rate, cadence) where devices write them as
    _POINT_DETAILS or _POINT_TIME (two thirds of a Garmin file's bytes; for a point of
    another layout, its <extensions> alone, as _POINT_EXTENSIONS), so GDAL, which
    parses a file twice (opening it, then reading the tracks), parses a third as much.
    The tracks' points, segments and type come from the <trkpt> tags' positions and the
    tracks' own elements, none of which go; the times are read from the file itself
    (_point_times).

    The bytes as they are wherever that could change what GDAL reads: unless every
    '<extensions' after the first <trkpt goes (GDAL makes tracks' own <extensions>
    fields, even one named 'type', and looks for them in the first megabyte, which
    leaving points' out would stretch), if an entity is declared (its text could come
    back), and before the first <trkpt>. What goes is well-formed ASCII, so a file GDAL
    refuses is refused the same (read_gpx_data reads the file as it is if the lean
    bytes fail)."""
    first = data.find(b"<trkpt")
    if first < 0 or data.find(b"<!ENTITY", 0, first) >= 0:  # entities: declared before
        return data
    patterns = ((_POINT_DETAILS, b"<ele>"), (_POINT_TIME, b"<time>"),
                (_POINT_EXTENSIONS, b"<extensions>"))
    for pattern, start in patterns:
        at = data.find(start, 0, first)
        while at >= 0:  # the bytes before the first trackpoint stay as they are
            if pattern.match(data, at):
                return data
            at = data.find(start, at + 1, first)
    lean = _POINT_TIME.sub(b"", _POINT_DETAILS.sub(b"", data))
    left = lean.count(b"<extensions", first)  # points of another layout: their extensions
    if left:
        lean, removed = _POINT_EXTENSIONS.subn(b"", lean)
        if removed != left:
            return data
    return lean


def _line_array(line: list[tuple]) -> np.ndarray:
    """A line's (lon, lat) as an (n, 2) array: fiona gives a list of tuples, one
    dimension for all (x, y or x, y, z), which fromiter takes at twice asarray's speed."""
    width = len(line[0])
    flat = np.fromiter(chain.from_iterable(line), np.float64, len(line) * width)
    return flat.reshape(len(line), width)[:, :2]


def _read_broken(data: bytes, name: str | Path) -> tuple[Activity, str | None]:
    """What GDAL refused, or would misread (a coordinate that is not a number): the
    points before any break, by a streaming parse; GPXError if there are none."""
    if not data.strip():
        raise GPXError(f"{name}: empty file")
    if not _GPX_ROOT.search(data[:HEAD_BYTES]):
        raise GPXError(f"{name}: not a GPX file (no <gpx> element)")
    streamed = stream_tracks(data)
    segments, texts, routes, waypoints, sport, error = streamed[:6]
    points = sum(len(s) for s in segments)
    if error is None and not points and not routes and not waypoints:
        raise GPXError(f"{name}: GDAL's GPX driver cannot read it")
    if error is not None and not points:
        raise GPXError(f"{name}: {error}")
    point_times = None
    if any(t for seg in texts for t in seg):
        point_times = []
        for seg in texts:
            flat = np.full(len(seg), np.nan)
            timed = [i for i, t in enumerate(seg) if t]
            flat[timed] = posix_times([seg[i] for i in timed])
            point_times.append(flat)
    start, time_note = _start_of(point_times, data, bool(points))
    notes = []
    if error is not None:
        cause = error.removeprefix("broken or truncated XML (").removesuffix(")")
        notes.append(f"{name}: broken off ({cause}); kept the {points:,} positions before it")
    if streamed.not_numbers:
        note = bad_coordinates_note(name, streamed.not_numbers, streamed.example)
        notes.append(note.removeprefix(f"{name}: ") if notes else note)
    note = "; ".join(notes) or None
    return Activity(name, segments, start, routes, waypoints, sport, point_times,
                    time_note), note
