"""The output cache: the GeoTIFFs a build wrote, copied when a rebuild would write them again.

Tuning the looks (another colormap, style, legend or basemap) changes nothing of the
heat GeoTIFF or the counts GeoTIFF, and at street zoom writing those is most of such a
rebuild: every level scaled and blurred, and hundreds of megapixels compressed (a
city's 2 M points at zoom 16: ~5 of a rebuild's ~8 s, bench/README.md). So the COGs a
build writes are kept, each under a key naming everything its bytes come from:

- the counts' key (countcache.entry_key: the activities' identities, the box, the mode,
  privacy), the grid and the levels written as overviews;
- the heat's settings (sigma, scaling, normalize, the level plan that samples the
  distribution) and the GeoTIFF's tags (what was drawn, the filters);
- the colour table for the RGBA GeoTIFF;
- the code that makes them: geoheat's own source, and numpy's, scipy's, rasterio's and
  GDAL's versions (a new blur or COG writer never trusts an old entry).

A rebuild whose key matches copies the entry into place and makes neither the heat
nor the levels for it. Entries are laid out as the counts cache's (a magic line, a
CRC-32 line, a JSON line, then the file's bytes), written atomically, ignored when any
check fails; the most recently used are kept (MAX_ENTRIES, MAX_BYTES).
"""

import functools
import hashlib
import json
import os
from pathlib import Path

from .cache import read_entry, write_atomic_entry
from .countcache import prune

OUTPUTS_FORMAT = 1
_MAGIC = b"geoheat-output\n"
MAX_ENTRIES = 24  # a few builds' GeoTIFFs (heat, RGBA, counts) at a few settings
MAX_BYTES = 2**30  # a city's heat GeoTIFF at zoom 16 is ~30 MB


@functools.cache
def code_digest() -> str:
    """geoheat's source and the versions of the libraries that make a COG's bytes."""
    import numpy
    import rasterio
    import scipy

    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for version in (numpy.__version__, scipy.__version__, rasterio.__version__,
                    rasterio.__gdal_version__):
        digest.update(version.encode() + b"\0")
    return digest.hexdigest()


def entry_key(counts_key: dict, kind: str, made: dict) -> dict:
    """The key of one output: counts_key (countcache.entry_key) and made, what else its
    bytes come from (grid, levels, heat settings, tags, colours), JSON-ready."""
    return {"format": OUTPUTS_FORMAT, "code": code_digest(), "counts": counts_key,
            "kind": kind, **made}


def entry_path(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    return cache_dir / "outputs" / f"{digest.hexdigest()[:32]}.bin"


def load(cache_dir: Path, key: dict) -> tuple[memoryview, dict] | None:
    """The file's bytes and the metadata stored with them under key, or None if absent,
    stale or damaged."""
    path = entry_path(cache_dir, key)
    found = read_entry(path, _MAGIC)
    if found is None:
        return None
    stored, body = found
    try:
        if stored["key"] != json.loads(json.dumps(key)) or not isinstance(stored["meta"], dict) \
                or len(body) != stored["size"]:
            return None
    except (KeyError, TypeError):
        return None
    try:
        os.utime(path)  # recently used: kept longest
    except OSError:
        pass
    return body, stored["meta"]


def store(cache_dir: Path, key: dict, written: Path, meta: dict) -> Path | None:
    """Keep the file at written (an output just made) under key, with meta; its path,
    or None when the cache cannot be written (the build goes on)."""
    path = entry_path(cache_dir, key)
    try:
        size = written.stat().st_size
        head = json.dumps({"key": key, "meta": meta, "size": size}).encode() + b"\n"
        write_atomic_entry(path, _MAGIC, head, written)
    except (OSError, ValueError):
        return None
    return path


def keep_recent(cache_dir: Path, keep: set[Path]) -> None:
    """Remove all but the most recently used entries; those in keep (this build's) stay."""
    try:
        prune(cache_dir / "outputs", keep=keep, max_entries=MAX_ENTRIES, max_bytes=MAX_BYTES,
              magic=_MAGIC)
    except OSError:
        pass
