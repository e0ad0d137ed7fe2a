"""geoheat's cache folder, and the parse cache: each GPX file's projected track points.

An entry is one file: a magic line, a checksum line (the JSON line's and the raw
bytes', so a build's first look at every file reads its header alone), a JSON header
line (the file's identity, the counts and the track's summary), then the segment
offsets (int64), the points (float64 pairs) and, where the file has them, each
point's time (float64 POSIX seconds) as raw little-endian bytes, which load without
parsing.

An entry is keyed by the file's absolute path, size, modification time, inode and
status-change time (ctime) and by CACHE_FORMAT, so a changed file is read again,
even one whose size and mtime were put back (touch cannot set ctime), and a new
geoheat never trusts an old layout. Entries are written to a temporary file and
renamed, so two runs at once never see half an entry. An entry that cannot be
read, fails its checksum (a flipped bit would silently move a ride) or holds a
point that is not finite is ignored and rewritten. When a build adds entries and the
cache holds more than MAX_CACHE_BYTES, the least recently used go (see prune).
A small entry (under 64 KB) is written in place instead, in one write (see
_write_entry): half of one fails those checks.
"""

import hashlib
import json
import os
import stat
import sys
import tempfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .summary import Summary

CACHE_FORMAT = 10
_MAGIC = b"geoheat-parsed\n"  # then the checksum line, one JSON line, the offsets and points
_CHECKSUM_SIZE = 4  # bytes of a CRC-32; the checksum line holds two, in hex: header, body
_CHECKSUMS_END = len(_MAGIC) + 4 * _CHECKSUM_SIZE  # where the checksum line's newline is
_HEAD_READ = 16384  # bytes read for a header alone: its JSON line is ~1-3 KB
# Parse entries beyond this, least recently used first, are removed after a build adds
# some: ~16 bytes a point, so room for 250 million points (a club's pooled exports,
# several times over as they are exported again).
MAX_CACHE_BYTES = 4 * 2**30


def checksum(header_and_body) -> bytes:
    """The hex CRC-32 of an entry's part (its JSON line, its raw bytes).

    CRC-32 is made for this (accidental damage: every 1-3 bit error and every burst
    up to 32 bits is caught, other damage but for 1 in 4 billion) and costs ~1 ms
    per 8 MB where BLAKE2b costs ~6 (bench/bench_cache.py); it guards no secret.
    """
    return b"%08x" % zlib.crc32(header_and_body)


def open_regular(path):
    """A cache entry opened for reading (binary), only if it is a regular file: a FIFO
    would hold the build forever, and a link (to /dev/zero, say) is not what geoheat
    wrote there. OSError for anything else. Callers read at most its fstat size, so
    nothing is read without end."""
    flags = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_NONBLOCK", 0))  # O_NONBLOCK: opening a FIFO does not wait
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (see open_regular): at most its size when opened,
    and at most limit."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        return f.read(size if limit is None else min(size, limit))


def default_cache_dir() -> Path:
    """The user's cache folder for geoheat ($GEOHEAT_CACHE_DIR overrides)."""
    if os.environ.get("GEOHEAT_CACHE_DIR"):
        return Path(os.environ["GEOHEAT_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "geoheat"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a whole file under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_entry(path: Path, magic: bytes) -> tuple[dict, memoryview] | None:
    """An entry as write_atomic_entry writes it (magic, the CRC-32 line, a JSON line,
    the body): its JSON and its body, or None if absent, not a regular file (see
    read_regular), of another magic, damaged or not JSON."""
    try:
        data = read_regular(path)  # a FIFO or a link there is no entry
    except OSError:
        return None
    checksum_end = len(magic) + 8
    if not data.startswith(magic) or data[checksum_end:checksum_end + 1] != b"\n":
        return None
    if checksum(memoryview(data)[checksum_end + 1:]) != data[len(magic):checksum_end]:
        return None
    try:
        header_end = data.index(b"\n", checksum_end + 1)
        head = json.loads(data[checksum_end + 1:header_end])
    except ValueError:
        return None
    if not isinstance(head, dict):
        return None
    return head, memoryview(data)[header_end + 1:]


def write_atomic_entry(path: Path, magic: bytes, head: bytes, source: Path,
                       chunk: int = 2**20) -> None:
    """Write an entry of magic, the hex CRC-32 (checksum) of head and source's bytes, a
    newline, head and source's bytes, copied a chunk at a time (no second copy of a
    large file in memory), under a temporary name, then renamed into place. OSError
    when source changed size meanwhile."""
    size = os.stat(source).st_size
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as out, open(source, "rb") as f:
            out.write(magic + b"00000000\n" + head)
            crc = zlib.crc32(head)
            while part := f.read(chunk):
                crc = zlib.crc32(part, crc)
                out.write(part)
            if out.tell() != len(magic) + 9 + len(head) + size:
                raise OSError(f"{source}: changed while copied")
            out.seek(len(magic))
            out.write(b"%08x" % crc)  # as checksum gives it
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


_ENTRY_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
# An entry this small is written in place (see _write_entry); a larger one under a
# temporary name, then renamed.
IN_PLACE_BYTES = 64 * 1024


def _write_entry(path: Path, data: bytes) -> None:
    """Write a parse entry. A small one (a tiny file's: 100,000 of them cost the cold
    build more than parsing them, bench/bench_many_files.py) is created in place with
    O_EXCL, in one write: a third of write_atomic's cost (no random temporary name, no
    rename, its folder made only when missing). A reader never trusts half of one: load
    checks the size and checksums, and refuses it. An entry already there (damaged, or
    being written by another build) is replaced by write_atomic, as is a large one."""
    if len(data) > IN_PLACE_BYTES:
        write_atomic(path, data)
        return
    try:
        try:
            fd = os.open(path, _ENTRY_FLAGS, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, _ENTRY_FLAGS, 0o600)
    except FileExistsError:
        write_atomic(path, data)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        path.unlink(missing_ok=True)  # a partial entry: not left to be read
        raise


class ParsedFile(NamedTuple):
    """One activity file as the pipeline uses it: EPSG:3857 points, cut into segments.

    Segment i is xy[offsets[i]:offsets[i + 1]]. error is the reason the file was
    skipped (unreadable, or no track points), else None; note says what was kept
    of a file that broke off.
    """

    name: str  # the file, as messages name it
    xy: np.ndarray  # (n, 2) float64
    offsets: np.ndarray  # (segments + 1,) int64
    start: datetime | None
    routes: int = 0
    waypoints: int = 0
    invalid: int = 0  # points that are no position on Earth, dropped
    error: str | None = None
    format: str = "gpx"
    activity_type: str | None = None  # Strava's vocabulary (formats.TYPES)
    note: str | None = None
    # Each point's time, POSIX seconds (NaN where a point has none); None: no times at all.
    times: np.ndarray | None = None
    time_note: str | None = None  # why the file's own time is not the start (implausible)
    summary: Summary | None = None  # the track in brief; None without points
    size: int = 0  # bytes the file takes uncompressed (what --max-file-size limits)
    # The file's own start where activities.csv gives another (start): exports' dates
    # differ from the file's by a minute or more, so duplicates are matched on both.
    own_start: datetime | None = None

    @property
    def points(self) -> int:
        """Number of track points kept (also when they are not loaded)."""
        return self.summary.points if self.summary is not None else len(self.xy)

    @property
    def loaded(self) -> bool:
        """Whether the points are here (see without_points)."""
        return len(self.xy) == self.points

    def without_points(self) -> "ParsedFile":
        """The same, with the points left in the cache: the summary stands for them."""
        return self._replace(xy=np.empty((0, 2)), offsets=np.zeros(1, dtype=np.int64),
                             times=None)


def identity(source) -> dict:
    """What makes an entry valid: the file (or zip and member), its size, mtime, inode
    and ctime. ctime is set by the system on every change and cannot be put back, so
    an edit whose size and mtime were restored (touch -d, os.utime) still counts; the
    inode catches a file replaced by another."""
    if not hasattr(source, "member"):  # a plain path
        from .source_bytes import Source

        source = Source(Path(source))
    stat = os.stat(source.path)
    # os.path.realpath is Path.resolve without making Path objects: twice as fast.
    key = {"path": os.path.realpath(source.path), "member": source.member,
           "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
           "inode": stat.st_ino, "format": CACHE_FORMAT}
    if getattr(source, "copy", None) is not None:  # one of a zip's members of one name
        key["copy"] = source.copy
    return key


def entry_path(cache_dir: Path, identity: dict) -> Path:
    """Where a file's entry lives: parsed/<first two hex>/<hash>.bin."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return cache_dir / "parsed" / digest[:2] / f"{digest[2:32]}.bin"


def load(cache_dir: Path, source, points: bool = True) -> ParsedFile | None:
    """The cached parse of a source (see source_bytes.Source), or None if absent, stale or
    unreadable. points=False: the entry's header only, checked by its own checksum (the
    summary stands for the points: see ParsedFile.without_points); the points are
    read, and checked, when load_points asks for them."""
    try:
        key = identity(source)
        path = entry_path(cache_dir, key)
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(size if points else min(size, _HEAD_READ))
            header_end = data.find(b"\n", _CHECKSUMS_END + 1)
            if header_end < 0 and not points:  # a header longer than one read
                data += f.read(size - len(data))
                header_end = data.find(b"\n", _CHECKSUMS_END + 1)
        if (header_end < 0 or not data.startswith(_MAGIC)
                or data[_CHECKSUMS_END:_CHECKSUMS_END + 1] != b"\n"):
            return None
        header = memoryview(data)[_CHECKSUMS_END + 1:header_end]
        if checksum(header) != data[len(_MAGIC):len(_MAGIC) + 2 * _CHECKSUM_SIZE]:
            return None  # damaged on disk: a flipped bit could move a ride, or make it NaN
        meta = json.loads(bytes(header))
        if meta["identity"] != key:
            return None
        n_offsets, n_points = meta["offsets"], meta["points"]
        timed = meta["times"]
        if size - header_end - 1 != 8 * n_offsets + (24 if timed else 16) * n_points:
            return None  # cut short
        start = datetime.fromisoformat(meta["start"]) if meta["start"] else None
        summary = Summary.from_json(meta["summary"]) if meta["summary"] else None
        if (summary.points if summary else 0) != n_points:
            return None
        found = ParsedFile(_name(source), np.empty((0, 2)), np.zeros(1, dtype=np.int64),
                           start, meta["routes"], meta["waypoints"], meta["invalid"],
                           meta["error"], meta["file_format"], meta["type"], meta["note"],
                           None, meta["time_note"], summary, meta["size"])
        if not points:
            return found
        body = memoryview(data)[header_end + 1:]
        if checksum(body) != data[len(_MAGIC) + 2 * _CHECKSUM_SIZE:_CHECKSUMS_END]:
            return None
        offsets = np.frombuffer(body[:8 * n_offsets], dtype="<i8")
        points_end = 8 * n_offsets + 16 * n_points
        xy = np.frombuffer(body[8 * n_offsets:points_end], dtype="<f8").reshape(n_points, 2)
        times = np.frombuffer(body[points_end:], dtype="<f8") if timed else None
        if not _plausible(offsets, xy):
            return None
        return found._replace(xy=xy, offsets=offsets, times=times)
    except Exception:  # absent, cut short, foreign, garbled: all mean "not cached"
        return None


def _plausible(offsets: np.ndarray, xy: np.ndarray) -> bool:
    """Segments that cut the points in order, and points that are all finite: what
    every later step assumes (one NaN made every later run fail until the cache was
    cleared). Checked on load, so an entry that a checksum cannot vouch for (written
    by a faulty geoheat) is read again instead."""
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(xy):
        return False
    if len(offsets) > 1 and (np.diff(offsets) < 0).any():
        return False
    return bool(np.isfinite(xy).all())  # ~2 us a file: cheaper than four column min/max


def _name(source) -> str:
    return source.name if hasattr(source, "member") else str(source)


def prune(cache_dir: Path, keep=(), limit: int | None = None) -> int:
    """Remove the least recently used parse entries until the rest take at most limit
    bytes (None: MAX_CACHE_BYTES), never those of the sources in keep (this build's).
    Recent use is the access time, which Linux's default (relatime) moves at most once
    a day: enough to tell last month's export from this week's. The entries removed."""
    limit = MAX_CACHE_BYTES if limit is None else limit
    entries, total = [], 0
    try:
        for folder in os.scandir(cache_dir / "parsed"):
            if folder.is_dir(follow_symlinks=False):
                for entry in os.scandir(folder.path):
                    if entry.name.endswith(".bin"):
                        try:
                            stat = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue  # removed by another build meanwhile
                        entries.append((stat.st_atime_ns, stat.st_size, entry.path))
                        total += stat.st_size
    except OSError:
        return 0  # no cache, or one that cannot be listed: nothing to do
    if total <= limit:
        return 0
    kept = set()
    for source in keep:
        try:
            kept.add(str(entry_path(cache_dir, identity(source))))
        except OSError:
            pass  # gone: its entry can go too
    removed = 0
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path not in kept:
            try:
                os.unlink(path)
                removed += 1
                total -= size
            except OSError:
                pass  # removed by another build meanwhile, or read-only
    return removed


def store(cache_dir: Path, source, parsed: ParsedFile, key: dict | None = None) -> bool:
    """Cache a source's parse; a cache that cannot be written (read-only, full, a file
    in the way) is skipped, and the run goes on. key: the source's identity, if taken
    already (before it was read: a file changed meanwhile is then read again)."""
    try:
        offsets = np.ascontiguousarray(parsed.offsets, dtype="<i8")
        xy = np.ascontiguousarray(parsed.xy, dtype="<f8")
        times = None if parsed.times is None else np.ascontiguousarray(parsed.times, dtype="<f8")
        if not _plausible(offsets, xy) or (times is not None and len(times) != len(xy)):
            return False  # load would refuse it
        meta = {"identity": key or identity(source),
                "start": parsed.start.isoformat() if parsed.start else None,
                "routes": parsed.routes, "waypoints": parsed.waypoints,
                "invalid": parsed.invalid, "error": parsed.error,
                "file_format": parsed.format, "type": parsed.activity_type, "note": parsed.note,
                "time_note": parsed.time_note, "offsets": len(offsets), "points": len(xy),
                "times": times is not None,
                "summary": parsed.summary.to_json() if parsed.summary else None,
                "size": parsed.size}
        header = json.dumps(meta).encode()
        body = (offsets.tobytes() + xy.tobytes()
                + (times.tobytes() if times is not None else b""))
        _write_entry(entry_path(cache_dir, meta["identity"]),
                     _MAGIC + checksum(header) + checksum(body) + b"\n" + header + b"\n"
                     + body)
    except (OSError, ValueError):  # ValueError: json cannot write what it was given
        return False
    return True
