"""A PMTiles (version 3) file as a tile source of geoheat.serve: read-only, served as it
is; its directories decoded here (the pmtiles package reads its header)."""

import json
import os
import threading
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import InputError
from .page import TileFile
from .tilesource import DamagedTile, NotFound, bounds_on_earth, file_tile, tile_etag

# A PMTiles file is read with pread, never mapped: a file cut short while it is served
# would kill the server (SIGBUS) through a map. Every size read from the file is checked
# before it is used, and what its directories inflate to is bounded.
PMTILES_HEADER_BYTES = 127
MAX_DIRECTORY_BYTES = 8 * 2**20  # inflated; ~5-10 bytes an entry: ~1 M tiles a directory
MAX_METADATA_BYTES = 8 * 2**20
MAX_FILE_TILE_BYTES = 16 * 2**20  # a heat tile is a few KiB; more is no tile
DIRECTORY_CACHE_ENTRIES = 2 * 2**20  # leaf directories kept decoded (32 bytes an entry)
MAX_DIRECTORY_DEPTH = 4  # the root and at most three levels of leaves (the spec's limit)


class Directory(NamedTuple):
    """A PMTiles directory, decoded: per entry its first tile id, run length (0: a leaf
    directory), byte length and offset (in the tile data, or the leaf section)."""

    tile_ids: np.ndarray  # uint64, increasing
    run_lengths: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    def find(self, tile_id: int) -> int | None:
        """The entry holding tile_id (a tile, or the leaf directory that may), or None."""
        k = int(np.searchsorted(self.tile_ids, np.uint64(tile_id), side="right")) - 1
        if k < 0:
            return None
        run = int(self.run_lengths[k])
        return k if run == 0 or tile_id < int(self.tile_ids[k]) + run else None


def decode_varints(data: bytes, count: int) -> np.ndarray:
    """The first count unsigned LEB128 varints of data, as uint64. ValueError if data
    holds fewer, or one does not fit 64 bits."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)  # each varint's last byte
    if len(ends) < count:
        raise ValueError(f"{len(ends):,} numbers where {count:,} were due")
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    ends = ends[:count]
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    used = raw[:ends[-1] + 1]
    position = np.arange(len(used)) - np.repeat(starts, ends - starts + 1)
    if (position > 9).any() or (raw[ends[position[ends] == 9]] > 1).any():
        raise ValueError("a number beyond 64 bits")
    parts = (used & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


def decode_directory(data: bytes) -> Directory:
    """A PMTiles v3 directory from its uncompressed bytes (the spec's layout: the entry
    count, then the tile id deltas, run lengths, lengths and offsets, each a varint;
    an offset 0 means 'right after the entry before'). ValueError if it does not hold."""
    (count,) = decode_varints(data, 1).tolist()
    if count > len(data):  # every entry takes 4 bytes at least
        raise ValueError(f"{count:,} entries in {len(data):,} bytes")
    values = decode_varints(data, 1 + 4 * count)[1:]
    deltas, runs, lengths, raw_offsets = values.reshape(4, count)
    tile_ids = np.cumsum(deltas, dtype=np.uint64)
    if (tile_ids[1:] <= tile_ids[:-1]).any():  # a zero delta, or a sum past 64 bits
        raise ValueError("tile ids out of order")
    if count and raw_offsets[0] == 0:
        raise ValueError("the first entry has no offset")
    # Offset 0: right after the entry before; else the offset plus one.
    anchored = raw_offsets > 0
    anchor = np.maximum.accumulate(np.where(anchored, np.arange(count), 0))
    before = np.concatenate([[0], np.cumsum(lengths, dtype=np.uint64)[:-1]]).astype(np.uint64)
    # uint64 wraps silently: a damaged offset is caught when it is read (beyond the end).
    offsets = raw_offsets[anchor] - np.uint64(1) + before - before[anchor]
    return Directory(tile_ids, runs, lengths, offsets)


class PMTilesFile(TileFile):
    """Tiles of a PMTiles (version 3) file. The header, metadata and root directory are
    read and checked when it is opened (InputError, one line); a damaged leaf directory
    or tile is a DamagedTile for the tiles it holds."""

    dynamic = False

    def __init__(self, path: Path):
        try:
            from pmtiles.tile import Compression, TileType, deserialize_header
        except ImportError:
            raise InputError("serving PMTiles needs the pmtiles package: "
                             "pip install pmtiles") from None
        self.path = path
        self.file = open(path, "rb")
        self.read_lock = threading.Lock()  # where there is no pread: seek and read
        self.directories: OrderedDict = OrderedDict()  # (offset, length) -> Directory or error
        self.directories_lock = threading.Lock()
        try:
            head = self._read(0, PMTILES_HEADER_BYTES, "header", opening=True)
            if head[:7] != b"PMTiles" or head[7] != 3:
                raise InputError(f"{path}: {_pmtiles_version_problem(head)}")
            try:
                h = self.header = deserialize_header(head)
            except ValueError as err:  # an unknown compression or tile type
                raise InputError(f"{path}: not a PMTiles file this geoheat reads "
                                 f"(header: {err})") from None
            self.internal = h["internal_compression"]
            self.tiles_compressed = h["tile_compression"]
            unread = {Compression.BROTLI, Compression.ZSTD}
            for what, compression in (("directories", self.internal),
                                      ("tiles", self.tiles_compressed)):
                if compression in unread:
                    raise InputError(f"{path}: its {what} are compressed with "
                                     f"{compression.name.lower()}, which geoheat does not read")
            # Directories: gzip unless said otherwise (as the pmtiles package reads them).
            self.gzip_directories = self.internal != Compression.NONE
            self.gzip_tiles = self.tiles_compressed == Compression.GZIP
            self.root = self._directory(h["root_offset"], h["root_length"], opening=True)
            self._meta = self._check_header(h, self._metadata())
        except DamagedTile as err:
            self.file.close()
            raise InputError(str(err)) from None
        except BaseException:
            self.file.close()
            raise
        kinds = {TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}
        self.format = kinds.get(h["tile_type"], "png")
        stat = os.fstat(self.file.fileno())
        self.identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def _read(self, offset: int, length: int, what: str, opening: bool = False) -> bytes:
        """length bytes at offset, all of them: DamagedTile if the file ends before."""
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        if offset + length > size:
            where = "the file" if opening else "the file (cut short since it was opened?)"
            raise DamagedTile(f"{self.path}: its {what} lies beyond the end of {where}")
        if hasattr(os, "pread"):
            data = os.pread(fd, length, offset)
        else:
            with self.read_lock:
                self.file.seek(offset)
                data = self.file.read(length)
        if len(data) != length:
            raise DamagedTile(f"{self.path}: its {what} is cut short")
        return data

    def _inflate(self, data: bytes, compressed: bool, limit: int, what: str) -> bytes:
        """Data as stored (gzip or not), at most limit bytes inflated: a directory that
        inflates beyond it is a bomb (0.8 GB on every request, before)."""
        if not compressed:
            return data
        try:
            inflater = zlib.decompressobj(wbits=47)  # a gzip or zlib header
            out = inflater.decompress(data, limit + 1)
        except zlib.error as err:
            raise DamagedTile(f"{self.path}: its {what} is damaged ({err})") from None
        if len(out) > limit:
            raise DamagedTile(f"{self.path}: its {what} inflates beyond "
                              f"{limit // 2**20} MiB (damaged, or a decompression bomb)")
        if not inflater.eof:
            raise DamagedTile(f"{self.path}: its {what} is cut short")
        return out

    def _directory(self, offset: int, length: int, opening: bool = False) -> Directory:
        """A directory, decoded once: kept (and so is why one cannot be)."""
        key = (offset, length)
        with self.directories_lock:
            found = self.directories.get(key)
            if found is not None:
                self.directories.move_to_end(key)
        if found is None:
            what = "root directory" if opening else f"directory at {offset:,}"
            try:
                if length > MAX_DIRECTORY_BYTES:
                    raise DamagedTile(f"{self.path}: its {what} takes {length:,} bytes, "
                                      "more than a directory can")
                data = self._inflate(self._read(offset, length, what, opening),
                                     self.gzip_directories, MAX_DIRECTORY_BYTES, what)
                try:
                    found = decode_directory(data)
                except ValueError as err:
                    raise DamagedTile(f"{self.path}: its {what} is damaged ({err})") from None
            except DamagedTile as err:
                found = str(err)  # kept too: a bomb is not inflated again on every request
            if not opening:
                self._keep_directory(key, found)
        if isinstance(found, str):
            raise DamagedTile(found)
        return found

    def _keep_directory(self, key, found) -> None:
        with self.directories_lock:
            self.directories[key] = found
            total = sum(len(d.tile_ids) if isinstance(d, Directory) else 1
                        for d in self.directories.values())
            while total > DIRECTORY_CACHE_ENTRIES and len(self.directories) > 1:
                _, dropped = self.directories.popitem(last=False)
                total -= len(dropped.tile_ids) if isinstance(dropped, Directory) else 1

    def _metadata(self) -> dict:
        """The JSON metadata; {} if it cannot be read or is no object (only the name and
        description come from it)."""
        h = self.header
        if h["metadata_length"] > MAX_METADATA_BYTES:
            return {}
        try:
            data = self._inflate(self._read(h["metadata_offset"], h["metadata_length"],
                                            "metadata"),
                                 self.gzip_directories, MAX_METADATA_BYTES, "metadata")
            metadata = json.loads(data)
        except (DamagedTile, ValueError):
            return {}
        return metadata if isinstance(metadata, dict) else {}

    def _check_header(self, h, metadata: dict) -> dict:
        path = self.path
        bounds = bounds_on_earth([h["min_lon_e7"] / 1e7, h["min_lat_e7"] / 1e7,
                                  h["max_lon_e7"] / 1e7, h["max_lat_e7"] / 1e7])
        if bounds is None:
            raise InputError(f"{path}: its header's bounds are not on Earth (lon "
                             f"{h['min_lon_e7'] / 1e7}..{h['max_lon_e7'] / 1e7}, lat "
                             f"{h['min_lat_e7'] / 1e7}..{h['max_lat_e7'] / 1e7})")
        if not h["min_zoom"] <= h["max_zoom"] <= 30:
            raise InputError(f"{path}: its header's zooms are not zooms 0-30 "
                             f"({h['min_zoom']}..{h['max_zoom']})")
        name, description = metadata.get("name"), metadata.get("description")
        legend = metadata.get("geoheat_legend")
        return {"name": name if isinstance(name, str) else None,
                "description": description if isinstance(description, str) else "",
                "legend": legend if isinstance(legend, str) else None,
                "bounds": bounds, "minzoom": h["min_zoom"], "maxzoom": h["max_zoom"]}

    def tile(self, z, x, y, query):
        if query:
            raise NotFound("a tile file has no views")
        from pmtiles.tile import zxy_to_tileid

        h = self.header
        tile_id = zxy_to_tileid(z, x, y)
        directory = self.root
        for _ in range(MAX_DIRECTORY_DEPTH):
            k = directory.find(tile_id)
            if k is None:
                break
            offset, length = int(directory.offsets[k]), int(directory.lengths[k])
            if int(directory.run_lengths[k]) == 0:  # a leaf directory
                directory = self._directory(h["leaf_directory_offset"] + offset, length)
                continue
            if length > MAX_FILE_TILE_BYTES:
                raise DamagedTile(f"{self.path}: tile {z}/{x}/{y} takes {length:,} bytes, "
                                  "more than a tile can")
            what = f"tile {z}/{x}/{y}"
            data = self._inflate(self._read(h["tile_data_offset"] + offset, length, what),
                                 self.gzip_tiles, MAX_FILE_TILE_BYTES,
                                 what)
            return file_tile(data, self.format, self.etag(z, x, y, query))
        return file_tile(None, self.format, self.etag(z, x, y, query))

    def etag(self, z, x, y, query) -> str:
        return tile_etag(self.identity, z, x, y)


def _pmtiles_version_problem(head: bytes) -> str:
    """Why a file's first bytes are not a PMTiles version 3 header, in words."""
    if head[:7] == b"PMTiles":
        return f"PMTiles version {head[7]}; geoheat reads version 3"
    if head[:2] == b"PM" and int.from_bytes(head[2:4], "little") in (1, 2):
        return (f"PMTiles version {int.from_bytes(head[2:4], 'little')}; geoheat reads "
                "version 3 (convert it: pmtiles convert)")
    return "not a PMTiles file (no PMTiles header)"
