"""Where activities come from: files, folders, and Strava bulk exports (zip or unpacked).

A Strava export holds activities.csv and an activities/ folder mixing .gpx,
.gpx.gz, .fit.gz and .tcx.gz; when a folder or zip has activities.csv, the files
it lists are the activities, with the type and date it gives them. Zip members
and gzip files are read into memory, never unpacked to disk, and never beyond
MAX_ACTIVITY_BYTES: a small file can inflate to gigabytes.

What a file is comes from its bytes (sniff_format), not its name: people rename,
gunzip and convert files, and browsers gunzip downloads without renaming them.
"""

import csv
import fnmatch
import io
import os
import posixpath
import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .errors import GPXError, InputError
from .options import DEFAULT_MAX_FILE_SIZE
from .formats import TYPES, activity_type
from .gpx import plausible_start, xml_bytes

FORMATS = ("gpx", "fit", "tcx")
SUFFIXES = tuple(f".{fmt}{gz}" for fmt in FORMATS for gz in ("", ".gz"))
EXPORT_INDEX = "activities.csv"
# The most one activity may take in memory, uncompressed: the largest real
# activities are tens of MB; a gzip or zip bomb or a sparse file is far above.
MAX_ACTIVITY_BYTES = DEFAULT_MAX_FILE_SIZE
# parse_file's words for a reader that raised something other than GPXError: the file
# is skipped, and the fuzz harness counts it as a reader bug.
READER_FAILURE = "could not be decoded as"
SNIFF_BYTES = 4096  # enough to see past a BOM, an XML declaration and comments
GZIP_MAGIC = b"\x1f\x8b"
# A field of activities.csv may be long (a pasted description); far beyond this the
# file is not an index.
CSV_FIELD_LIMIT = 64 * 1024**2

Warn = Callable[[str], None]


class Source(NamedTuple):
    """One activity file: on disk, or a member of a zip; with what activities.csv says.

    A file found but not to be read (listed by activities.csv but not in the export, not
    listed, a zip inside a zip) is a Source too, with the reason in `unread`: reading it
    fails with that reason, so it is counted, warned about and reported as skipped."""

    path: Path  # the file on disk (the zip, for a member)
    member: str | None = None  # the file's name inside the zip
    activity_type: str | None = None  # from activities.csv ("Activity Type")
    date: datetime | None = None  # from activities.csv ("Activity Date"), UTC
    unread: str | None = None  # why it is not read; None: it is read
    # Which of the zip's members of this name (0 the first), where several have it;
    # None where the name is the zip's only one of that name.
    copy: int | None = None

    @property
    def name(self) -> str:
        """How messages name it: the path, or zip:member (and which one of that name)."""
        if not self.member:
            return str(self.path)
        which = f" (copy {self.copy + 1} of that name)" if self.copy else ""
        return f"{self.path}:{self.member}{which}"

    @property
    def format(self) -> str:
        """'gpx', 'fit' or 'tcx', guessed from the name (anything else is tried as GPX);
        parse_file goes by sniff_format, the content."""
        name = (self.member or self.path.name).lower().removesuffix(".gz")
        suffix = name.rsplit(".", 1)[-1]
        return suffix if suffix in FORMATS else "gpx"


# --- what a file is ---------------------------------------------------------------

_ROOT = re.compile(rb"(?:<\?.*?\?>|<!--.*?-->|(?i:<!DOCTYPE)[^>]*>|\s)*<([\w.:-]+)", re.S)


def xml_root(head: bytes) -> str | None:
    """The local name of the first element of XML bytes (after BOM, blanks, declaration,
    comments), or None if they do not start like XML."""
    match = _ROOT.match(xml_bytes(head[:SNIFF_BYTES], strict=False))
    return match.group(1).decode("ascii", "replace").rsplit(":", 1)[-1] if match else None


def sniff_format(head: bytes) -> str | None:
    """'gpx', 'fit' or 'tcx' from a file's first bytes (uncompressed), else None."""
    if len(head) >= 12 and head[8:12] == b".FIT":
        return "fit"
    root = xml_root(head)
    if root is None:
        return None
    if root.lower() == "gpx":
        return "gpx"
    if root == "TrainingCenterDatabase":
        return "tcx"
    return None


_MAGIC = [(b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"),
          (b"PK\x05\x06", "an empty zip archive"), (GZIP_MAGIC, "gzip data"),
          (b"BZh", "bzip2 data"), (b"\xfd7zXZ", "xz data"), (b"7z\xbc\xaf", "a 7-Zip archive"),
          (b"Rar!", "a RAR archive"), (b"SQLite format 3", "an SQLite database"),
          (b"\x00\x00\x00\x18ftyp", "an MP4 video"), (b"\x00\x00\x00\x20ftyp", "an MP4 video")]


def describe_content(head: bytes) -> str | None:
    """What bytes that sniff_format does not know are, for a message ('a PNG image',
    'an HTML page', 'an XML file whose root is <kml>')."""
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    root = xml_root(head)
    if root is not None:
        if root.lower() == "html":
            return "an HTML page"
        if root.lower() == "kml":
            return "a KML file (geoheat reads GPX, FIT and TCX)"
        return f"an XML file whose root is <{root}>"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "JSON"
    if b"\x00" in head[:512]:
        return "binary data of an unknown kind"
    return "text, not GPX, FIT or TCX"


# --- reading bytes, bounded -------------------------------------------------------

# The end of the message for a file over the size limit: a result that depends on the
# limit, so reading.parse_and_cache does not cache it.
TOO_LARGE = "(--max-file-size raises the limit)"


def _too_large(name: str, limit: int, compressed: bool) -> GPXError:
    size = f"{limit / 1024**2:g} MiB" if limit >= 1024**2 else f"{limit:,} bytes"
    how = " uncompressed" if compressed else ""
    return GPXError(f"{name}: larger than {size}{how} {TOO_LARGE}")


def _read_limited(stream, name: str, limit: int, size: int | None = None) -> bytes:
    """All of a stream, gunzipped if it is gzip (by its magic, not its name), and at
    most `limit` bytes; GPXError beyond. A gzip stream cut short keeps what it held.

    size: what the stream should hold (a file's size): read(n) allocates n bytes first,
    so asking for the limit costs 512 MiB of allocation and a copy per file.
    """
    if not stream.peek(2)[:2] == GZIP_MAGIC:  # peek: one read, one buffer, no concatenation
        expected = min(limit, size if size is not None else limit)
        data = stream.read(expected + 1)
        if len(data) > expected and expected < limit:  # it grew since its size was taken
            data += stream.read(limit + 1 - len(data))
        if len(data) > limit:
            raise _too_large(name, limit, False)
        return data
    first = stream.read(1 << 20)
    # Chunks, joined once at the end: a growing bytearray reallocates, so a bomb
    # refused at the limit would briefly hold twice the limit.
    out: list[bytes] = []
    size = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    chunk = first
    while chunk:
        while chunk:
            piece = inflater.decompress(chunk, min(1 << 20, limit + 1 - size))
            out.append(piece)
            size += len(piece)
            if size > limit:
                raise _too_large(name, limit, True)
            chunk = inflater.unconsumed_tail
            if inflater.eof:
                rest = inflater.unused_data
                if not rest.startswith(GZIP_MAGIC):  # trailing zeros or junk: gzip ignores it
                    return b"".join(out)
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a multi-member gzip
                chunk = rest
        chunk = stream.read(1 << 20)
    if not size:
        raise GPXError(f"{name}: damaged compressed data (the gzip stream ends before any data)")
    return b"".join(out)  # cut short: what it held goes to the reader, which notes the break


# One open ZipFile per zip and process: opening parses the whole central directory,
# so reopening it for each of 5,000 members is quadratic. Keyed by the zip's identity
# (a changed zip is reopened) and by process id: a forked worker must not share the
# parent's file offset.
_ZIPS: dict[Path, tuple[tuple, zipfile.ZipFile]] = {}
_OPEN_ZIPS = 4


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at path, opened once per process and kept open."""
    st = path.stat()
    key = (os.getpid(), st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _ZIPS.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    if hit is not None:
        _ZIPS.pop(path)
        if hit[0][0] == key[0]:
            hit[1].close()
    while len(_ZIPS) >= _OPEN_ZIPS:
        old_key, old = _ZIPS.pop(next(iter(_ZIPS)))
        if old_key[0] == key[0]:
            old.close()
    archive = zipfile.ZipFile(path)
    _ZIPS[path] = (key, archive)
    return archive


class _Salvaged(NamedTuple):
    """A member found by its local header in a zip with no central directory."""

    data_at: int  # where its compressed bytes start
    size: int  # compressed size (to the end of the file for the one cut short)
    method: int
    flags: int
    file_size: int  # uncompressed size its header gives (0 if in a data descriptor)


_SALVAGED: dict[Path, tuple[tuple, dict[str, list[_Salvaged]]]] = {}


def salvage_zip(path: Path) -> dict[str, list[_Salvaged]]:
    """The members of a zip whose central directory is missing (a download cut short),
    from the local headers that precede each member (each name's, in order: a zip may
    hold a name twice); the last may be cut short.

    A member whose sizes follow its data (a 'data descriptor') is found by inflating
    it to its end. Cached per zip and process, like open_zip.
    """
    st = path.stat()
    key = (os.getpid(), st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _SALVAGED.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    members: dict[str, list[_Salvaged]] = {}
    with open(path, "rb") as f:
        at = 0
        while True:
            f.seek(at)
            header = f.read(30)
            if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
                break
            (flags, method, _, _, _, size, file_size, name_length,
             extra_length) = struct.unpack("<6x4H3I2H", header)
            name = f.read(name_length).decode("utf-8" if flags & 0x800 else "cp437", "replace")
            extra = f.read(extra_length)
            data_at = at + 30 + name_length + extra_length
            if size == 0xFFFFFFFF or file_size == 0xFFFFFFFF:  # zip64: sizes in the extra
                i = 0
                while i + 4 <= len(extra):
                    tag, length = struct.unpack_from("<2H", extra, i)
                    if tag == 1 and length >= 16:
                        file_size, size = struct.unpack_from("<2Q", extra, i + 4)
                    i += 4 + length
            if flags & 0x8:  # sizes after the data: inflate to find its end
                if method != zipfile.ZIP_DEFLATED:
                    break
                size = _deflated_length(f, data_at)
                f.seek(data_at + size)
                descriptor = f.read(24)
                skip = 4 if descriptor.startswith(b"PK\x07\x08") else 0
                file_size = 0
                next_at = data_at + size + skip + 12
                if descriptor[skip + 12: skip + 16] not in (b"PK\x03\x04", b"PK\x01\x02"):
                    next_at += 8  # a zip64 descriptor: 8-byte sizes
            else:
                next_at = data_at + size
            size = max(0, min(size, st.st_size - data_at))
            if not name.endswith("/"):
                members.setdefault(name, []).append(
                    _Salvaged(data_at, size, method, flags, file_size))
            if next_at <= at or next_at >= st.st_size:
                break
            at = next_at
    _SALVAGED[path] = (key, members)
    return members


def _deflated_length(f, data_at: int) -> int:
    """How many bytes of raw deflate start at data_at (to the end of the file if cut)."""
    f.seek(data_at)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    fed, pending = 0, b""
    while not inflater.eof:
        if not pending:
            pending = f.read(1 << 20)
            if not pending:
                return fed
            fed += len(pending)
        inflater.decompress(pending, 1 << 20)  # output dropped: only its end is wanted
        pending = inflater.unconsumed_tail
    return fed - len(inflater.unused_data)  # at the end, the rest is unused_data


def _read_salvaged(path: Path, member: str, name: str, limit: int,
                   copy: int | None = None) -> bytes:
    entry = salvage_zip(path)[member][copy or 0]
    if entry.flags & 0x1:
        raise GPXError(f"{name}: encrypted in the zip (geoheat reads no passwords); skipped")
    if entry.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = _METHOD_NAMES.get(entry.method, f"method {entry.method}")
        raise GPXError(f"{name}: compressed with {method} in a damaged zip")
    with open(path, "rb") as f:
        f.seek(entry.data_at)
        packed = f.read(entry.size)
    if entry.method == zipfile.ZIP_STORED:
        data = packed
    else:  # raw deflate, capped; a member cut short keeps what it held
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        data = inflater.decompress(packed, limit + 1)
        if len(data) > limit:
            raise _too_large(name, limit, True)
    del packed
    return _read_limited(io.BufferedReader(io.BytesIO(data)), name, limit, len(data))


_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                     zipfile.ZIP_LZMA}
_METHOD_NAMES = {9: "Deflate64", 99: "AES encryption", 93: "Zstandard", 98: "PPMd"}


def _not_regular(mode: int) -> str | None:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a file"


def read_source(source: Source, max_bytes: int = MAX_ACTIVITY_BYTES) -> bytes:
    """A source's bytes, unzipped and gunzipped in memory, at most max_bytes of them;
    GPXError (one line naming it) if that fails."""
    name = source.name
    if source.unread:
        raise GPXError(f"{name}: {source.unread}")
    try:
        if source.member is None:
            try:
                st = os.stat(source.path)  # stat, not open: opening a FIFO blocks
            except FileNotFoundError:
                if os.path.islink(source.path):
                    raise GPXError(f"{name}: a broken link (to {os.readlink(source.path)})")
                raise
            what = _not_regular(st.st_mode)
            if what:
                raise GPXError(f"{name}: not a regular file ({what})")
            if st.st_size > max_bytes and not source.path.name.lower().endswith(".gz"):
                raise _too_large(name, max_bytes, False)  # from its size: a sparse 30 GB file
            with open(source.path, "rb") as f:
                return _read_limited(f, name, max_bytes, st.st_size)
        try:
            archive = open_zip(source.path)
        except zipfile.BadZipFile:  # no central directory: read it from its local header
            return _read_salvaged(source.path, source.member, name, max_bytes, source.copy)
        if source.copy is None:
            info = archive.getinfo(source.member)
        else:  # getinfo gives the last of a name held twice
            info = [i for i in archive.infolist() if i.filename == source.member][source.copy]
        if info.flag_bits & 0x1:
            raise GPXError(f"{name}: encrypted in the zip (geoheat reads no passwords); "
                           "skipped")
        if info.compress_type not in _READABLE_METHODS:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise GPXError(f"{name}: compressed with {method}, which Python's zipfile "
                           "cannot read (re-zip it with plain Deflate)")
        if info.file_size > max_bytes:
            raise _too_large(name, max_bytes, True)
        with archive.open(info) as f:
            return _read_limited(f, name, max_bytes, info.file_size)
    except OSError as err:
        reason = err.strerror or str(err)
        raise GPXError(f"{name}: cannot read ({reason})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, IndexError,
            NotImplementedError, RuntimeError) as err:
        raise GPXError(f"{name}: damaged compressed data ({err})") from None


# --- activities.csv ---------------------------------------------------------------

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


def _decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # an index saved by a spreadsheet as Latin-1/cp1252
        return data.decode("cp1252", "replace")


# --- finding sources ----------------------------------------------------------------

def _hidden(relative: str) -> bool:
    """Hidden files and folders, and the Finder's copies in __MACOSX."""
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.split("/"))


def _matches(name: str, pattern: str | None) -> bool:
    """Does a relative path match: a pattern with '/' matches the path, one without the
    file name at any depth ('**/x' also matches x at the top)."""
    base = PurePosixPath(name).name
    if pattern is None:
        return base.lower().endswith(SUFFIXES)
    if "/" in pattern:
        return (fnmatch.fnmatch(name, pattern) or
                (pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])))
    return fnmatch.fnmatch(base, pattern)


def _gz_key(name: str) -> str:
    """A listed file's key: case and .gz do not matter (people gunzip unpacked exports)."""
    return name.lower().removesuffix(".gz")


# Why a file found is not read (Source.unread): each a reason of its own in warnings.
NOT_IN_EXPORT = "listed in activities.csv but not in the export"
NOT_LISTED = "in the export but not listed in its activities.csv"
SECOND_COPY = "another copy of a file activities.csv lists (read once)"
ROUTE = "a planned route of the export, not an activity"
NESTED_ZIP = "a zip inside the zip, not read (unzip the outer zip and give its folder)"


def _tree_sources(files: list[str], read_index: Callable[[str], bytes],
                  make: Callable[[str, str | None, datetime | None], Source], label: str,
                  pattern: str | None, warn: Warn) -> list[Source]:
    """The sources among `files` (relative POSIX paths of a folder or zip): each
    activities.csv's listed files for the tree under it, and matching files elsewhere.

    A listed file the export lacks, and an activity file it holds but does not list,
    are Sources with the reason in `unread` where `make` gives sources.Source (a URL
    tree's sources have no such field: those files are named in one warning instead).
    """
    files = [f for f in files if not _hidden(f)]
    indexes = sorted((f for f in files if PurePosixPath(f).name.lower() == EXPORT_INDEX),
                     key=lambda f: (f.count("/"), f))
    roots: dict[str, str] = {}  # export root -> its activities.csv
    for index in indexes:
        root = str(PurePosixPath(index).parent)
        if not any(root == r or r == "." or root.startswith(r + "/") for r in roots):
            roots[root] = index  # an index inside an export's tree is the export's own

    def under(f: str, root: str) -> bool:
        return root == "." or f.startswith(root + "/")

    unread: list[tuple[str, str, str | None, datetime | None]] = []  # (file, why, type, date)
    sources = [make(f, None, None) for f in sorted(files)
               if not any(under(f, r) for r in roots) and _matches(f, pattern)]
    for root, index in roots.items():
        members = [f for f in files if under(f, root)]
        where = f"{label}/{index}" if label else index

        def every_file(why: str) -> list[Source]:
            found = [make(f, None, None) for f in sorted(members) if _matches(f, pattern)]
            if found:
                warn(f"{where}: {why}; reading every activity file in the export instead, "
                     "without its types and dates")
            return found

        try:
            listed = read_export_index(_decode_csv(read_index(index)))
        except (ExportIndexError, OSError, GPXError, zipfile.BadZipFile,
                RuntimeError, NotImplementedError) as err:
            sources += every_file(f"cannot be understood ({err})")
            continue
        listed = [(listed_name(filename), kind, date) for filename, kind, date in listed]
        listed = [entry for entry in listed if entry[0]]
        if not listed:  # header only, or no file in the column found: still an export
            sources += every_file("lists no activity file")
            continue
        present: dict[str, str] = {}
        for f in members:
            relative = f if root == "." else f[len(root) + 1:]
            present.setdefault(_gz_key(relative), f)
        for f in members:  # a listed name without its folder: by base name
            present.setdefault(_gz_key(PurePosixPath(f).name), f)
        found, missing, read = [], [], set()
        for filename, kind, date in listed:
            member = present.get(_gz_key(filename))
            if member is None:
                missing.append((f"{root}/{filename}" if root != "." else filename, kind, date))
            elif _matches(member, pattern) and member not in read:
                read.add(member)
                found.append(make(member, kind, date))
        if len(missing) == len(listed):
            sources += every_file(f"none of the {len(listed):,} files it lists is in the "
                                  "export")
            continue
        unread += [(f, NOT_IN_EXPORT, kind, date) for f, kind, date in missing
                   if _matches(f, pattern)]
        listed_keys = {_gz_key(filename) for filename, _, _ in listed}
        listed_keys |= {_gz_key(PurePosixPath(filename).name) for filename, _, _ in listed}

        def why_not_listed(f: str) -> str:
            relative = f if root == "." else f[len(root) + 1:]
            if _gz_key(relative) in listed_keys or _gz_key(PurePosixPath(f).name) in listed_keys:
                return SECOND_COPY
            return ROUTE if relative.lower().startswith("routes/") else NOT_LISTED

        unread += [(f, why_not_listed(f), None, None) for f in sorted(members)
                   if f not in read and _matches(f, pattern)]
        sources += found
    return sources + _unread_sources(unread, make, label, warn)


def _unread_sources(unread: list[tuple[str, str, str | None, datetime | None]],
                    make: Callable[[str, str | None, datetime | None], Source], label: str,
                    warn: Warn) -> list[Source]:
    """Sources that say why they are not read; or, where make gives sources of another
    kind (a URL tree), one warning per reason naming them."""
    made = [(make(f, kind, date), why) for f, why, kind, date in unread]
    if all(isinstance(source, Source) for source, _ in made):
        return [source._replace(unread=why) for source, why in made]
    by_reason: dict[str, list[str]] = {}
    for f, why, _, _ in unread:
        by_reason.setdefault(why, []).append(f)
    for why, names in by_reason.items():
        more = f" and {len(names) - 20:,} more" if len(names) > 20 else ""
        warn(f"{label}: not read, {why}: {len(names):,} file{'' if len(names) == 1 else 's'}"
             f" ({', '.join(names[:20])}{more})")
    return []


def _walk(folder: Path) -> list[str]:
    """Every non-folder entry under folder (recursively, hidden ones left out) as a
    relative POSIX path; entries of any kind, so a FIFO or broken link is reported."""
    found, seen = [], set()

    def visit(directory: Path, prefix: str) -> None:
        try:
            st = directory.stat()
            if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
                return
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                visit(Path(entry.path), relative + "/")
            else:
                found.append(relative)

    visit(folder, "")
    return found


def _from_zip(path: Path, pattern: str | None, warn: Warn) -> list[Source]:
    try:
        archive = open_zip(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as err:
        try:
            names = [name for name, copies in salvage_zip(path).items() for _ in copies]
        except (OSError, struct.error, zlib.error):
            names = []
        if not names:
            raise InputError(f"{path}: not a readable zip file ({err})") from None
        warn(f"{path}: a damaged zip or one cut short (no central directory); reading the "
             f"{len(names):,} files found in it from their own headers")
    except OSError as err:
        raise InputError(f"{path}: not a readable zip file ({err})") from None

    def read_index(member: str) -> bytes:
        return read_source(Source(path, member), CSV_FIELD_LIMIT * 4)

    copies = Counter(names)
    unique = list(copies)
    sources = _tree_sources(unique, read_index,
                            lambda m, kind, date: Source(path, m, kind, date), str(path),
                            pattern, warn)
    twice = [name for name, n in copies.items() if n > 1]
    if twice:  # zipfile would read the last of them only: each is read, and named
        shown = ", ".join(twice[:3]) + (f" and {len(twice) - 3:,} more" if len(twice) > 3 else "")
        warn(f"{path}: {len(twice):,} name{' is' if len(twice) == 1 else 's are'} held by "
             f"more than one member ({shown}); reading each")
        sources = [copy for source in sources for copy in (
            [source._replace(copy=i) for i in range(copies[source.member])]
            if copies[source.member] > 1 else [source])]
    nested = [Source(path, name, unread=NESTED_ZIP) for name in unique
              if name.lower().endswith(".zip") and not _hidden(name)]
    return sources + nested


def _from_folder(folder: Path, pattern: str | None, warn: Warn) -> list[Source]:
    """The sources in a folder, and in the zips in it that hold activity files (Strava
    export zips kept where they were downloaded, several exports side by side)."""
    def read_index(relative: str) -> bytes:
        return read_source(Source(folder / relative), CSV_FIELD_LIMIT * 4)

    files = _walk(folder)
    sources = _tree_sources(files, read_index,
                            lambda rel, kind, date: Source(folder / rel, None, kind, date),
                            str(folder), pattern, warn)
    for relative in files:
        if relative.lower().endswith(".zip") and not _hidden(relative):
            sources += _zip_in_folder(folder / relative, pattern, warn)
    return sources


def _zip_in_folder(path: Path, pattern: str | None, warn: Warn) -> list[Source]:
    """A zip found in a folder: its activity files; none, silently, for a zip of
    something else (photos); one unread Source if it cannot be opened, saying why."""
    try:
        what = _not_regular(os.stat(path).st_mode)  # opening a FIFO would block
    except OSError as err:
        what = "a broken link" if os.path.islink(path) else (err.strerror or str(err))
    if what:
        return [Source(path, unread=f"a zip that cannot be read ({what})")]
    try:
        return _from_zip(path, pattern, warn)
    except InputError as err:
        reason = str(err).removeprefix(f"{path}: ")
        return [Source(path, unread=reason)]


def _starts_like_zip(path: Path) -> bool:
    """A zip by its first bytes: a browser may save an export without '.zip'."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def find_sources(inputs: Iterable[str | Path], pattern: str | None = None, *,
                 on_warning: Warn | None = None) -> list[Source]:
    """The activity files named by inputs: files, folders and Strava export zips.

    Folders are searched recursively (hidden files and folders left out).
    pattern: a glob on file names at any depth, or on the path relative to the
    folder if it holds '/' (None: every .gpx, .fit, .tcx, plain or .gz).
    A folder or zip holding activities.csv yields the files it lists; one that
    cannot be understood yields every activity file under it, and on_warning
    (if given) is called with one line saying so. Entries that are not regular
    files (FIFOs, devices, broken links) are listed: reading them fails with the
    reason, so they are counted as skipped. A zip that cannot be opened is skipped
    with a warning. Each file appears once. InputError for a missing input, or when
    nothing matches (saying why if a zip could not be opened).
    """
    warn = on_warning or (lambda message: None)
    found: dict[tuple[Path, str | None, int | None], Source] = {}
    inputs = [Path(item) for item in inputs]
    unreadable: list[str] = []
    for item in inputs:
        if item.is_dir():
            sources = _from_folder(item, pattern, warn)
        elif item.is_file() and (item.suffix.lower() == ".zip" or _starts_like_zip(item)):
            try:
                sources = _from_zip(item, pattern, warn)
            except InputError as err:  # one damaged zip among several inputs: skip it
                unreadable.append(str(err))
                warn(f"skipped {err}")
                continue
        elif item.is_file() or os.path.lexists(item):
            sources = [Source(item)]  # a FIFO or broken link fails on reading, saying so
        else:
            raise InputError(f"{item}: no such file or folder")
        for source in sources:
            found.setdefault((source.path, source.member, source.copy), source)
    if not found and unreadable:
        raise InputError("; ".join(unreadable))
    if not found:
        names = ", ".join(map(str, inputs))
        wanted = repr(pattern) if pattern else "any .gpx, .fit or .tcx file"
        raise InputError(f"{names}: no file matches {wanted}")
    return list(found.values())
