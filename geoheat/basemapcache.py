"""The basemap's tile cache on disk: a tile's bytes and a side file (its expiry and
validators), reused across runs while fresh by the server's expiry headers (seven days
where it sends none). Entries are read only when regular files, and only up to their
size; a cache that cannot be written is skipped after its first failure.
"""

import email.utils
import json
import math
import re
from pathlib import Path

from .basemapimage import MAX_TILE_BYTES
from .cache import read_regular, write_atomic

DEFAULT_FRESHNESS = 7 * 24 * 3600  # the OSM policy's minimum when a server sends no expiry
MAX_META_BYTES = 8192  # a cached tile's side file: an expiry and two validators


def expiry(headers, now: float) -> float | None:
    """When a response goes stale, from Cache-Control or Expires; None: do not store."""
    control = (headers.get("Cache-Control") or "").lower()
    if "no-store" in control:
        return None
    if "no-cache" in control:
        return now
    match = re.search(r"max-age=(\d+)", control)
    if match:  # RFC 9111 caps delta-seconds at 2^31; a longer number must not overflow a float
        return now + min(int(match.group(1)[:12]), 2**31)
    if headers.get("Expires"):
        try:
            return email.utils.parsedate_to_datetime(headers["Expires"]).timestamp()
        except (TypeError, ValueError, OverflowError, IndexError):
            return now  # an unreadable date means already expired (RFC 9111)
    return now + DEFAULT_FRESHNESS


def read_cache(path: Path) -> tuple[bytes, dict] | None:
    """A cached tile's bytes and metadata, or None (absent, unreadable or damaged)."""
    try:
        # Regular files only (a FIFO would hold the build), no larger than they can be.
        meta = json.loads(read_regular(path.with_suffix(".json"), MAX_META_BYTES))
        if not _valid_meta(meta):  # e.g. `null`, or an expiry that is no number
            return None
        # No more than a tile can be (decode_tile refuses more).
        return read_regular(path, MAX_TILE_BYTES + 1), meta
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        return None


def _valid_meta(meta) -> bool:
    """Whether a side file holds what a fetch stores: a finite expiry, header-safe strings."""
    if not isinstance(meta, dict):
        return False
    expires = meta.get("expires")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return False
    try:
        if not math.isfinite(expires):
            return False
    except OverflowError:  # an int beyond a float
        return False
    return all(header_value(meta.get(key)) == meta.get(key) for key in ("etag", "last_modified"))


def header_value(value) -> str | None:
    """A validator worth sending back (printable ASCII, so a valid header), else None."""
    if isinstance(value, str) and re.fullmatch(r"[\x20-\x7e]{1,1000}", value):
        return value
    return None


def store_cache(path: Path, data: bytes, meta: dict) -> None:
    """Cache a tile: its bytes first, then the metadata that makes it count."""
    write_atomic(path, data)
    write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())


class CacheWriter:
    """Writes to the tile cache; the first failure (read-only, full, a file in the way)
    ends the writing, so a run without a cache is one warning, not one per tile."""

    def __init__(self):
        self.error: str | None = None
        self.skipped = 0

    def store(self, path: Path, data: bytes | None, meta: dict) -> None:
        if self.error is not None:
            self.skipped += 1
            return
        try:
            if data is None:  # revalidated: only the expiry changes
                write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())
            else:
                store_cache(path, data, meta)
        except OSError as err:
            self.error = err.strerror or type(err).__name__
            self.skipped += 1

    def forget(self, path: Path) -> None:
        """Remove a damaged entry, so that it is fetched again next time."""
        for victim in (path.with_suffix(".json"), path):
            try:
                victim.unlink(missing_ok=True)
            except OSError:
                pass  # not writable: read_cache will keep finding it damaged, no worse
