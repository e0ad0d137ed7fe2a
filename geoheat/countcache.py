"""The counts cache: a build's summed counts, kept for the next builds of the same tracks.

Rebuilding is how people tune a heatmap (another colormap, sigma, scaling or style)
and explore it (another zoom, another output); none of that changes the counts of a
grid, which are most of a rebuild's work at high zoom (every activity's points loaded
and drawn again). An entry holds one grid's sparse counts (the output's, or a pyramid
level's), the points drawn and outside, and which activities were drawn, keyed by
everything those counts depend on:

- each counted activity's parse-cache identity (its file's path, size, mtime, ctime,
  inode: see cache.py), in order, so an edited, added or removed file is a new key;
- the box and the mode, and the grid (its zoom and tiles);
- the code that turns points into counts (the source of the modules below), so a
  geoheat whose counting changed never trusts an old entry.

One entry a grid: a build at zoom 15 after one at 16 finds every grid it needs among
the first one's pyramid levels, and a build that adds a tile archive counts only the
levels it adds. Layout as the parse cache's: a magic line, a CRC-32 line, a JSON line,
then raw little-endian arrays; written atomically; an entry that fails any check is
ignored (and counted again). Only the most recently used entries are kept
(MAX_ENTRIES, MAX_BYTES).
"""

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cache import checksum, identity, open_regular, read_entry, write_atomic
from .rasterize import BYTES_PER_DATA_TILE, TooBig
from .tiles import TILE_SIZE, CellTiles, Grid, TileKey, narrowest

COUNTS_FORMAT = 2
_MAGIC = b"geoheat-counts\n"
MAX_ENTRIES = 64  # a grid each: a few builds' output grids and their pyramid levels
MAX_BYTES = 2**30  # an entry is ~6 bytes per pixel with heat: 1 GiB is many builds
_PIXELS = TILE_SIZE * TILE_SIZE
# The modules whose code decides the counts (points in, counts out).
_COUNTING_MODULES = ("pipeline", "cache", "rasterize", "summary", "tiles", "extent",
                     "countcache", "privacy")


class Counted(NamedTuple):
    """One grid's counts in a build, and what the build drew (the same on every grid)."""

    counts: dict[TileKey, np.ndarray]  # the sparse tiles
    used: int  # points drawn
    outside: int  # points outside the box
    drawn: np.ndarray  # per counted activity, in order: whether any point of it was drawn
    hidden: tuple[int, int] = (0, 0)  # points hidden by privacy, activities they are of


def _code_digest() -> str:
    """A digest of the counting modules' source: a changed geoheat is a new key."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _COUNTING_MODULES:
        digest.update((here / f"{name}.py").read_bytes())
    return digest.hexdigest()


def entry_key(activities, sources, box, mode: str, privacy=None) -> dict:
    """What a build's entries are valid for, but their grids (see the module's
    docstring). activities: the counted ParsedFiles, in order; sources: their Sources
    by name; privacy: the privacy.Privacy cut out (its digest only: no zone's place is
    written down). OSError if a file is gone."""
    identities = json.dumps([identity(sources[a.name]) for a in activities], sort_keys=True)
    hidden = None
    if privacy is not None and privacy.active:
        hidden = hashlib.sha256(repr(tuple(privacy)).encode()).hexdigest()
    return {
        "privacy": hidden,
        "format": COUNTS_FORMAT,
        "code": _code_digest(),
        "mode": mode,
        "box": None if box is None else [float(v) for v in box],
        "activities": hashlib.sha256(identities.encode()).hexdigest(),
        "count": len(activities),
    }


def _grid_key(key: dict, grid: Grid) -> dict:
    return {**key, "grid": [grid.zoom, grid.col_off, grid.row_off, grid.width, grid.height]}


def entry_path(cache_dir: Path, key: dict, grid: Grid) -> Path:
    digest = hashlib.sha256(json.dumps(_grid_key(key, grid), sort_keys=True).encode())
    return cache_dir / "counts" / f"{digest.hexdigest()[:32]}.bin"


def load(cache_dir: Path, key: dict, grid: Grid, memory: int | None = None) -> Counted | None:
    """The counts of grid stored under key, or None if absent, stale or damaged. memory:
    bytes the build's tiles may take (TooBig beyond it, before any tile is made)."""
    path = entry_path(cache_dir, key, grid)
    found = read_entry(path, _MAGIC)
    if found is None:
        return None
    meta, body = found
    try:
        if meta["key"] != _grid_key(key, grid):
            return None
        drawn = np.frombuffer(body, dtype=np.uint8, count=key["count"]).astype(bool)
        at, parts = len(drawn), []
        tiles, pixels = meta["tiles"], meta["pixels"]
        for size, dtype in zip((8 * tiles, 4 * tiles, 2 * pixels, 4 * pixels),
                               ("<i4", "<i4", "<u2", "<u4")):
            parts.append(np.frombuffer(body[at:at + size], dtype=dtype))
            at += size
        if at != len(body):
            return None  # cut short or padded
    except (ValueError, KeyError, TypeError):
        return None
    if memory is not None and tiles * BYTES_PER_DATA_TILE > memory:
        raise TooBig(f"the heat lies in {tiles:,} tiles at zoom {grid.zoom}, about "
                     f"{tiles * BYTES_PER_DATA_TILE / 2**30:.1f} GB of memory, more than the "
                     f"{memory / 2**30:.1f} GB free: lower --zoom or narrow --bounds")
    counts = _tiles(*parts)
    if counts is None:
        return None
    try:
        os.utime(path)  # recently used: kept longest
    except OSError:
        pass
    return Counted(counts, meta["used"], meta["outside"], drawn,
                   tuple(meta.get("hidden", (0, 0))))


def _tiles(keys, nonzero, flat, values) -> CellTiles | None:
    """Sparse tiles from their keys and, per tile, its nonzero pixels' flat indices and
    counts: kept as their cells (CellTiles), one dense block made at a time."""
    if len(nonzero) and (nonzero.min() < 1 or int(nonzero.sum()) != len(flat)
                         or int(values.min()) < 1):
        return None
    counts = CellTiles(np.uint32, store=narrowest(np.uint32, [int(values.max(initial=0))]))
    block = np.zeros(_PIXELS, dtype=np.uint32)
    ends = np.cumsum(nonzero)
    for (x, y), end, n in zip(keys.reshape(-1, 2).tolist(), ends.tolist(), nonzero.tolist()):
        where = flat[end - n:end]
        block[where] = values[end - n:end]
        counts.put((int(x), int(y)), block.reshape(TILE_SIZE, TILE_SIZE))
        block[where] = 0
    return counts


def store(cache_dir: Path, key: dict, grids: Iterable[tuple[Grid, Counted]],
          keep: Iterable[Grid] = ()) -> bool:
    """Keep grids' counts under key, then prune the oldest entries, never this build's
    (the grids stored and those in keep: found here and used); a cache that cannot be
    written is skipped (the build goes on). Whether all were stored."""
    try:
        paths = [entry_path(cache_dir, key, grid) for grid in keep]
        for grid, counted in grids:
            paths.append(_store(cache_dir, key, grid, counted))
        prune(cache_dir / "counts", keep=set(paths))
    except (OSError, ValueError):
        return False
    return True


def _store(cache_dir: Path, key: dict, grid: Grid, counted: Counted) -> Path:
    counts = counted.counts
    keys = np.array(list(counts), dtype="<i4").reshape(-1, 2)
    flats = [np.flatnonzero(block) for block in counts.values()]
    values = [block.reshape(-1)[flat] for block, flat in zip(counts.values(), flats)]
    nonzero = np.array([len(f) for f in flats], dtype="<i4")
    flat = np.concatenate(flats).astype("<u2") if flats else np.empty(0, "<u2")
    value = np.concatenate(values).astype("<u4") if values else np.empty(0, "<u4")
    meta = {"key": _grid_key(key, grid), "used": int(counted.used),
            "outside": int(counted.outside), "tiles": len(keys), "pixels": len(flat),
            "hidden": [int(v) for v in counted.hidden]}
    rest = b"".join([json.dumps(meta).encode(), b"\n",
                     np.asarray(counted.drawn, dtype=np.uint8).tobytes(), keys.tobytes(),
                     nonzero.tobytes(), flat.tobytes(), value.tobytes()])
    path = entry_path(cache_dir, key, grid)
    write_atomic(path, _MAGIC + checksum(rest) + b"\n" + rest)
    return path


def prune(folder: Path, keep: set[Path] = frozenset(), max_entries: int | None = None,
          max_bytes: int | None = None, magic: bytes = _MAGIC) -> None:
    """Remove all but the most recently used entries (at most max_entries, max_bytes in
    all: by default MAX_ENTRIES, MAX_BYTES); those in keep stay, whatever their number
    and size. Only geoheat's own entries (regular files beginning with magic) are
    counted and removed: anything else put there is left alone."""
    max_entries = MAX_ENTRIES if max_entries is None else max_entries
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    entries = []
    for path in folder.glob("*.bin"):
        try:
            with open_regular(path) as f:  # never through a link
                if f.read(len(magic)) != magic:
                    continue
                stat = os.fstat(f.fileno())
        except OSError:
            continue  # removed by another build meanwhile, or not an entry
        entries.append((path not in keep, -stat.st_mtime_ns, stat.st_size, path))
    total = 0
    for rank, (_, _, size, path) in enumerate(sorted(entries)):
        total += size
        if path not in keep and (rank >= max_entries or total > max_bytes):
            path.unlink(missing_ok=True)
