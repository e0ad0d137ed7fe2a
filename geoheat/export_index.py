"""activities.csv, the index of a Strava bulk export: each activity's file, type and date.

A Strava export holds activities.csv and an activities/ folder mixing .gpx,
.gpx.gz, .fit.gz and .tcx.gz; the files it lists are the activities, with the type
and date it gives them.
"""

import csv
import io
import posixpath
import re
from collections.abc import Callable
from datetime import datetime, timezone

from .formats import TYPES, activity_type
from .times import plausible_start

EXPORT_INDEX = "activities.csv"
# A field of activities.csv may be long (a pasted description); far beyond this the
# file is not an index.
CSV_FIELD_LIMIT = 64 * 1024**2


class ExportIndexError(ValueError):
    """activities.csv cannot be understood: the caller reads every activity file instead."""


_MONTHS = {}
for _number, _names in enumerate((
        "jan janv jän enero ene gen genn", "feb févr fév fev febr febbr fevereiro",
        "mar mär märz mars marzo março mrt", "apr avr avril abr aprile",
        "may mai mei mayo maggio maio", "jun juin junio giugno junho",
        "jul juil juli julio luglio julho", "aug août aout ago agosto",
        "sep sept set septiembre settembre setembro",
        "oct okt ott oktober octubre ottobre outubro out",
        "nov novembre noviembre novembro", "dec déc dez dic dezember diciembre dicembre dezembro"),
        start=1):
    for _word in _names.split():
        _MONTHS[_word] = _number
_WORD = re.compile(r"[^\W\d_]+")
_NUMBERS = re.compile(r"\d+")
# AM/PM as a word of its own ('AM', 'p. m.'), or the CJK words for them.
_PM_WORDS = ("午後", "下午", "오후")
_HALF_DAY = re.compile(
    r"(?<![^\W\d_])([ap])\.?\s?m\.?(?![^\W\d_])|(午前|午後|上午|下午|오전|오후)", re.I)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_strava_date(text: str) -> datetime | None:
    """activities.csv's 'Activity Date' as a UTC datetime, in the layouts Strava has used
    ('Feb 17, 2019, 6:26:44 AM', '17 Feb 2019, 06:26:44', '2018-06-08 18:28:52', and
    localised month names or numeric dates); None where it is ambiguous or no date."""
    text = (text or "").strip()
    if not text:
        return None
    clock = _CLOCK.search(text)
    hour = minute = second = 0
    rest = text
    if clock:
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        rest = text[:clock.start()] + " " + text[clock.end():]
        half = _HALF_DAY.search(rest)
        if half:
            after_noon = (half[1] or "").lower() == "p" or half[2] in _PM_WORDS
            if after_noon and hour < 12:
                hour += 12
            elif not after_noon and hour == 12:
                hour = 0
    numbers = _NUMBERS.findall(rest)
    month = None
    for word in _WORD.findall(rest.lower()):
        month = _MONTHS.get(word) or _MONTHS.get(word[:4]) or _MONTHS.get(word[:3])
        if month:
            break
    years = [n for n in numbers if len(n) == 4]
    if len(years) != 1:
        return None
    others = [int(n) for n in numbers if len(n) <= 2]
    if month is not None:
        if len(others) != 1:
            return None
        day = others[0]
    else:
        if len(others) != 2:
            return None
        first, second_ = others
        if numbers.index(years[0]) == 0:  # year first: always year-month-day
            month, day = first, second_
        elif first > 12 >= second_:
            day, month = first, second_
        elif second_ > 12 >= first:
            month, day = first, second_
        elif first == second_:
            month = day = first
        else:
            return None  # 03/04/2019: March or April? The file's own time decides.
    try:
        return datetime(int(years[0]), month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        return None


_FILE_VALUE = re.compile(r"^[^,]*\.(?:gpx|fit|tcx)(?:\.gz)?$", re.I)


def _column(header: list[str], rows: list[list[str]], names: tuple[str, ...],
            looks_right: Callable[[str], bool]) -> int | None:
    """The first column named one of names whose values look right (Strava repeats some
    names; an edited index may have an empty 'Filename' before the filled one), else
    the first so named, else the column whose filled values mostly look right (a
    header in another language)."""
    named = [i for i, title in enumerate(header) if title in names]
    for i in named:
        if any(looks_right(row[i].strip()) for row in rows[:200] if i < len(row)):
            return i
    if named:
        return named[0]
    best, best_share = None, 0.5
    for i in range(len(header)):
        values = [row[i].strip() for row in rows[:200] if i < len(row) and row[i].strip()]
        if values:
            share = sum(map(looks_right, values)) / len(values)
            if share > best_share:
                best, best_share = i, share
    return best


def _known_type(value: str) -> bool:
    # Numbers are ids here, not the GPX <type> codes activity_type also knows.
    return not value.strip().isdigit() and activity_type(value) in TYPES and (
        activity_type(value) != "Other" or value.strip().lower() == "other")


def read_export_index(text: str) -> list[tuple[str, str | None, datetime | None]]:
    """(file name, type, date) of each activity activities.csv lists with a file.

    Understands the current layout ('Activity ID,Activity Date,...,Filename'), the
    old one ('id,date,name,type,...,filename') and headers in other languages (by the
    columns' values). ExportIndexError if it cannot find the file names.
    """
    old_limit = csv.field_size_limit()
    try:
        csv.field_size_limit(CSV_FIELD_LIMIT)
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as err:
        raise ExportIndexError(f"not a readable CSV file ({err})") from None
    finally:
        csv.field_size_limit(old_limit)
    if not rows:
        raise ExportIndexError("empty")
    header, body = [h.strip().lower() for h in rows[0]], rows[1:]
    file_col = _column(header, body, ("filename", "file name", "file"),
                       lambda v: bool(_FILE_VALUE.match(v)))
    if file_col is None:
        raise ExportIndexError("no Filename column")
    type_col = _column(header, body, ("activity type", "type"), _known_type)
    date_col = _column(header, body, ("activity date", "date", "start date", "start_date"),
                       lambda v: parse_strava_date(v) is not None)
    listed = []
    for row in body:
        filename = row[file_col].strip() if file_col < len(row) else ""
        if not filename:
            continue  # a manual entry: no file
        kind = row[type_col] if type_col is not None and type_col < len(row) else None
        date = row[date_col] if date_col is not None and date_col < len(row) else None
        # 1970-01-01 or 9999-12-31 is no start: the file's own time is used instead.
        start = plausible_start(parse_strava_date(date))[0] if date else None
        listed.append((filename, activity_type(kind.strip()) if kind and kind.strip() else None,
                       start))
    return listed


def listed_name(filename: str) -> str:
    """A file name as activities.csv gives it, as a relative POSIX path: '\\' is '/',
    and './activities/x.gpx', 'activities//x.gpx' and '/activities/x.gpx' are
    'activities/x.gpx'."""
    name = posixpath.normpath(filename.strip().replace("\\", "/")).lstrip("/")
    return "" if name == "." else name


def decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # an index saved by a spreadsheet as Latin-1/cp1252
        return data.decode("cp1252", "replace")
