"""Read GPX tracks with fiona (GDAL's GPX driver).

An activity is one GPX file's tracks: every track segment is kept as its own
(n, 2) array of longitude, latitude, so a gap between segments is never drawn.
GDAL rejects a whole file for one break (a truncated download, a cut copy), so
then a streaming expat parse keeps the points before the break, and says so.

Every scan of the bytes here is linear: one odd file (self-closing <trkpt/>
without <time>) must not take minutes.
"""

import re
import xml.parsers.expat
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import GPXError

# Enough of a file's head to hold <metadata> and the first trackpoint.
HEAD_BYTES = 64 * 1024
# Before 1980 (GPS time begins 1980-01-06) is a clock never set (1970) or a converter's
# placeholder; more than a day ahead of now, a wrong clock.
EARLIEST_START = datetime(1980, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=1)
# FIT times below 0x10000000 s after the FIT epoch (1989-12-31) count from the device's
# power-on, not the calendar (the FIT protocol's rule): no date before 1998-07-05.
FIT_EARLIEST = datetime(1989, 12, 31, tzinfo=timezone.utc) + timedelta(seconds=0x10000000)

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
_ENCODING = re.compile(rb"""^(<\?xml[^>]*?encoding\s*=\s*)(["'])[\w.:-]+\2""")
# A coordinate as GPX writes it (xsd:decimal, an exponent allowed): ASCII digits, one
# point, a sign. GDAL (strtod) and float() read '46,0500' as 46, '0x2E' as 46, '4_6.05'
# as 4 or 46.05, full-width digits as 0 or 46: none of them is a position.
_NUMBER = rb"[ \t\r\n]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*"
_COORDINATE = re.compile(_NUMBER + rb"\Z")
# A lat or lon attribute whose value is not such a number; a file holding one is read
# the slow (strict) way. The scan costs ~6% of a read, so it is run only on a file GDAL
# gave a coordinate with at most two decimals (see _maybe_misread).
_BAD_COORDINATE = re.compile(
    rb"(?:lat|lon)\s*=\s*(?:\"(?!" + _NUMBER + rb"\")|'(?!" + _NUMBER + rb"'))")


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


def parse_time(text: bytes | str) -> datetime | None:
    """An ISO 8601 GPX time as a datetime, or None if it is not one. RFC 3339's
    lower-case 't' and 'z' ('2024-05-01t10:00:00z') and a space for the 't' are times."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return datetime.fromisoformat(text.strip().upper())
    except ValueError:
        return None


def plausible_start(start: datetime | None, now: datetime | None = None,
                    earliest: datetime = EARLIEST_START) -> tuple[datetime | None, str | None]:
    """(start, None) if start can be an activity's start, else (None, why not).

    Before 1980 or more than a day ahead is an unset clock, not a time. A time with
    no zone is UTC (as GPX says), so it compares with others whatever the local zone.
    """
    if start is None:
        return None, None
    aware = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    if earliest <= aware <= now + FUTURE_SLACK:
        return aware, None
    return None, f"time {start.date().isoformat()} is implausible (an unset clock?)"


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


def posix_times(texts: list[bytes]) -> np.ndarray:
    """ISO 8601 times as float64 POSIX seconds (NaN where one is no time); a time with
    no zone is taken as UTC."""
    n = len(texts)
    if n == 0:
        return np.empty(0)
    first = texts[0]
    width = len(first)
    # The common case in numpy: every time 'YYYY-MM-DDTHH:MM:SS[.fff]Z', computed from
    # its digits. Not numpy's own string parsing: casting a large array holding one
    # malformed string to datetime64 crashes the process (numpy 2.4, found by fuzzing).
    if 20 <= width <= 40 and first[-1:] in b"Zz" and first[10:11] in (b"T", b"t", b" "):
        raw = np.array(texts, dtype=f"S{width}")
        if raw.dtype.itemsize == width:
            fast = _utc_layout_times(raw.view(np.uint8).reshape(n, width))
            if fast is not None:
                return fast
    out = np.full(n, np.nan)
    for i, text in enumerate(texts):
        when = parse_time(text)
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            try:
                out[i] = when.timestamp()
            except (OverflowError, OSError, ValueError):
                pass
    return out


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _utc_layout_times(chars: np.ndarray) -> np.ndarray | None:
    """Rows of 'YYYY-MM-DDTHH:MM:SS[.fff]Z' bytes as POSIX seconds, NaN for a row that is
    no valid time; None unless every row has that layout's punctuation."""
    width = chars.shape[1]
    punctuation = {4: b"-", 7: b"-", 10: b"Tt ", 13: b":", 16: b":", width - 1: b"Zz"}
    if width > 20:
        punctuation[19] = b"."
    for at, allowed in punctuation.items():
        column = chars[:, at]
        if not np.logical_or.reduce([column == c for c in allowed]).all():
            return None
    digit_columns = [i for i in range(width - 1) if i not in punctuation]
    digits = chars[:, digit_columns].astype(np.int64) - ord("0")
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)

    def number(columns):
        value = np.zeros(len(chars), dtype=np.int64)
        for column in columns:
            value = value * 10 + digits[:, digit_columns.index(column)]
        return value

    year, month, day = number([0, 1, 2, 3]), number([5, 6]), number([8, 9])
    hour, minute, second = number([11, 12]), number([14, 15]), number([17, 18])
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    last_day = _DAYS_IN_MONTH[np.where(month_ok, month, 1)] + (leap & (month == 2))
    ok &= month_ok & (day >= 1) & (day <= last_day) & (hour < 24) & (minute < 60) & (second <= 60)
    # Days since 1970-01-01 from the civil date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    seconds = (days * 86400 + hour * 3600 + minute * 60 + second).astype(np.float64)
    if width > 21:
        fraction = number(list(range(20, width - 1)))
        seconds += fraction / 10.0 ** (width - 21)
    seconds[~ok] = np.nan
    return seconds


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


def coordinate(text: str | bytes | None) -> float:
    """A coordinate's text as a float; NaN (dropped, and counted, as no position) for
    no text or text that is not a plain decimal number (see _NUMBER)."""
    if text is None:
        return float("nan")
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if not _COORDINATE.match(raw):
        return float("nan")
    return float(raw)


def bad_coordinates_note(name: str | Path, count: int, example: str) -> str:
    """The note for a file with coordinates that are not numbers (report.warnings
    groups notes by their words before the parenthesis)."""
    return (f"{name}: coordinates that are not numbers ({example}); dropped "
            f"{count:,} track point{'' if count == 1 else 's'} as invalid")


class Streamed(NamedTuple):
    """What stream_tracks read."""

    segments: list[np.ndarray]
    times: list[list[bytes | None]]  # per segment, each point's time text or None
    routes: int
    waypoints: int
    sport: str | None
    error: str | None  # what broke it off, or None
    not_numbers: int = 0  # track points with a coordinate that is not a number
    example: str | None = None  # the first such coordinate, as the file has it


def stream_tracks(data: bytes) -> Streamed:
    """GPX tracks by a streaming expat parse, keeping every point closed before a break;
    a coordinate that is not a number (see coordinate) is NaN, and counted."""
    segments: list[np.ndarray] = []
    seg_times: list[list[bytes | None]] = []
    current: list[tuple[float, float]] = []
    current_times: list[bytes | None] = []
    state = {"point": None, "time": None, "text": None, "routes": 0, "waypoints": 0,
             "sport": None, "depth_trk": 0, "bad": 0, "example": None}

    def local(name: str) -> str:
        return name.rsplit(":", 1)[-1]

    def start(name, attrs):
        tag = local(name)
        if tag == "trkpt":
            lon, lat = attrs.get("lon"), attrs.get("lat")
            state["point"] = point = (coordinate(lon), coordinate(lat))
            state["time"] = None
            if np.isnan(point).any():  # no number: say which, unless it says nan
                for key, text in (("lat", lat), ("lon", lon)):
                    if text is not None and not _COORDINATE.match(text.encode("utf-8",
                                                                              "replace")):
                        state["bad"] += 1
                        state["example"] = state["example"] or f'{key}="{text[:20]}"'
                        break
        elif tag == "trk":
            state["depth_trk"] += 1
        elif tag == "trkseg":
            flush()
        elif tag == "rte":
            state["routes"] += 1
        elif tag == "wpt":
            state["waypoints"] += 1
        if tag in ("time", "type") and (state["point"] is not None or tag == "type"):
            state["text"] = []

    def end(name):
        tag = local(name)
        if tag == "trkpt" and state["point"] is not None:
            current.append(state["point"])
            current_times.append(state["time"])
            state["point"] = None
        elif tag == "time" and state["text"] is not None:
            if state["point"] is not None:
                state["time"] = "".join(state["text"]).strip().encode()
            state["text"] = None
        elif tag == "type" and state["text"] is not None:
            if state["depth_trk"] and state["sport"] is None:
                state["sport"] = "".join(state["text"]).strip() or None
            state["text"] = None
        elif tag in ("trkseg", "trk"):
            flush()

    def chars(text):
        if state["text"] is not None:
            state["text"].append(text)

    def flush():
        if current:
            segments.append(np.array(current, dtype=np.float64))
            seg_times.append(list(current_times))
        current.clear()
        current_times.clear()

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    error = None
    try:
        step = 1 << 20
        for at in range(0, len(data), step):
            parser.Parse(data[at:at + step], False)
        parser.Parse(b"", True)
    except xml.parsers.expat.ExpatError as err:
        error = f"broken or truncated XML ({err})"
    except RecursionError:
        error = "nested too deeply"
    flush()
    return Streamed(segments, seg_times, state["routes"], state["waypoints"], state["sport"],
                    error, state["bad"], state["example"])


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
    from fiona.io import MemoryFile  # imported here: a rebuild from the parse cache never needs it

    data = xml_bytes(data)
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
        return _read_broken(data, name)
    if _maybe_misread(segments) and _BAD_COORDINATE.search(data):
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


def _maybe_misread(segments: list[np.ndarray]) -> bool:
    """Whether GDAL may have read a coordinate that is no number: it reads the number
    the text starts with ('46,0500', '0x2E', '4_6.05', '４６' give 46, 0, 4, 0), which
    has few decimals, where a device writes 5 to 9. A coordinate with at most two is
    rare enough in real tracks (about 1 in 100,000) to check the text then; a bad text
    whose start has three decimals or more is within ~100 m of what it could mean."""
    with np.errstate(invalid="ignore"):  # NaN or inf (a text 'nan'): no position anyway
        for segment in segments:
            hundredths = segment * 100.0
            if (np.abs(hundredths - np.rint(hundredths)) < 1e-6).any():
                return True
    return False


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
