"""geoheat's cache folder, and the parse cache: each GPX file's projected track points.

An entry is one file: a magic line, a JSON header line (the file's identity and
the counts), then the segment offsets (int64) and points (float64) as raw
little-endian bytes, which load without parsing.

An entry is keyed by the file's absolute path, size and modification time and by
CACHE_FORMAT, so a changed file is read again and a new geoheat never trusts an
old layout. Entries are written to a temporary file and renamed, so two runs at
once never see half an entry; an entry that cannot be read is ignored and
rewritten.
"""

import hashlib
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

CACHE_FORMAT = 3
_MAGIC = b"geoheat-parsed\n"  # then one JSON line, then the offsets and points as raw bytes


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

    @property
    def points(self) -> int:
        """Number of track points kept."""
        return len(self.xy)


def _identity(source) -> dict:
    """What makes an entry valid: the file (or zip and member), its size and mtime."""
    if not hasattr(source, "member"):  # a plain path
        from .sources import Source

        source = Source(Path(source))
    stat = source.path.stat()
    return {"path": str(source.path.resolve()), "member": source.member, "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "format": CACHE_FORMAT}


def entry_path(cache_dir: Path, identity: dict) -> Path:
    """Where a file's entry lives: parsed/<first two hex>/<hash>.bin."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return cache_dir / "parsed" / digest[:2] / f"{digest[2:32]}.bin"


def load(cache_dir: Path, source) -> ParsedFile | None:
    """The cached parse of a source (see sources.Source), or None if absent, stale or
    unreadable."""
    try:
        identity = _identity(source)
        data = entry_path(cache_dir, identity).read_bytes()
        if not data.startswith(_MAGIC):
            return None
        header_end = data.index(b"\n", len(_MAGIC))
        meta = json.loads(data[len(_MAGIC):header_end])
        if meta["identity"] != identity:
            return None
        body = memoryview(data)[header_end + 1:]
        n_offsets, n_points = meta["offsets"], meta["points"]
        if len(body) != 8 * n_offsets + 16 * n_points:
            return None  # cut short
        offsets = np.frombuffer(body[:8 * n_offsets], dtype="<i8")
        xy = np.frombuffer(body[8 * n_offsets:], dtype="<f8").reshape(n_points, 2)
        start = datetime.fromisoformat(meta["start"]) if meta["start"] else None
        if n_offsets < 1 or offsets[-1] != n_points:
            return None
        return ParsedFile(_name(source), xy, offsets, start, meta["routes"], meta["waypoints"],
                          meta["invalid"], meta["error"], meta["file_format"], meta["type"],
                          meta["note"])
    except Exception:  # absent, cut short, foreign, garbled: all mean "not cached"
        return None


def _name(source) -> str:
    return source.name if hasattr(source, "member") else str(source)


def store(cache_dir: Path, source, parsed: ParsedFile) -> None:
    """Cache a source's parse; a cache that cannot be written is skipped (the run goes on)."""
    try:
        offsets = np.ascontiguousarray(parsed.offsets, dtype="<i8")
        xy = np.ascontiguousarray(parsed.xy, dtype="<f8")
        meta = {"identity": _identity(source),
                "start": parsed.start.isoformat() if parsed.start else None,
                "routes": parsed.routes, "waypoints": parsed.waypoints,
                "invalid": parsed.invalid, "error": parsed.error,
                "file_format": parsed.format, "type": parsed.activity_type, "note": parsed.note,
                "offsets": len(offsets), "points": len(xy)}
        header = _MAGIC + json.dumps(meta).encode() + b"\n"
        write_atomic(entry_path(cache_dir, meta["identity"]),
                     header + offsets.tobytes() + xy.tobytes())
    except OSError:
        pass
