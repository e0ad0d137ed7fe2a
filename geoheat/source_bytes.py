"""One activity file (a Source: a file on disk or a member of a zip) and its bytes.

Zip members and gzip files are read into memory, never unpacked to disk, and never
beyond MAX_ACTIVITY_BYTES: a small file can inflate to gigabytes. A zip without its
central directory is read from its members' own headers (zip_salvage).
"""

import io
import os
import stat
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from .errors import GPXError
from .options import DEFAULT_MAX_FILE_SIZE
from .sniff import GZIP_MAGIC
from .zip_salvage import salvage_zip

FORMATS = ("gpx", "fit", "tcx")
# The most one activity may take in memory, uncompressed: the largest real
# activities are tens of MB; a gzip or zip bomb or a sparse file is far above.
MAX_ACTIVITY_BYTES = DEFAULT_MAX_FILE_SIZE


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


# --- reading bytes, bounded -------------------------------------------------------

# The end of the message for a file over the size limit: a result that depends on the
# limit, so reading.parse_and_cache does not cache it.
TOO_LARGE = "(--max-file-size raises the limit)"


def too_large(name: str, limit: int, compressed: bool) -> GPXError:
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
            raise too_large(name, limit, False)
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
                raise too_large(name, limit, True)
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
            raise too_large(name, limit, True)
    del packed
    return _read_limited(io.BufferedReader(io.BytesIO(data)), name, limit, len(data))


_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                     zipfile.ZIP_LZMA}
_METHOD_NAMES = {9: "Deflate64", 99: "AES encryption", 93: "Zstandard", 98: "PPMd"}


def not_regular(mode: int) -> str | None:
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
            what = not_regular(st.st_mode)
            if what:
                raise GPXError(f"{name}: not a regular file ({what})")
            if st.st_size > max_bytes and not source.path.name.lower().endswith(".gz"):
                raise too_large(name, max_bytes, False)  # from its size: a sparse 30 GB file
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
            raise too_large(name, max_bytes, True)
        with archive.open(info) as f:
            return _read_limited(f, name, max_bytes, info.file_size)
    except OSError as err:
        reason = err.strerror or str(err)
        raise GPXError(f"{name}: cannot read ({reason})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, IndexError,
            NotImplementedError, RuntimeError) as err:
        raise GPXError(f"{name}: damaged compressed data ({err})") from None
