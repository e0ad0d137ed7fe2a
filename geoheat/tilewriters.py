"""Tile archives of heat tiles: the one PNG encoder of heat tiles (the build's MBTiles,
PMTiles and --site, and `geoheat serve`), the tiles of a level that show heat, and
the MBTiles and PMTiles files that hold them.
"""

import contextlib
import sqlite3
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import tiles
from .errors import OutputError
from .tiles import TileKey


# PNG deflate level of every heat tile geoheat makes (built, served, a site's): one
# encoder, so the three are byte-equal. On heat tiles 6 takes ~2 ms a tile, 9 more for
# a few per cent fewer bytes, 1 half the time for 40% more (bench/bench_serve.py).
PNG_LEVEL = 6


def png_tile(rgba: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """A (4, h, w) uint8 RGBA block as PNG bytes (8-bit RGBA, zlib), as map tiles are:
    the one PNG encoder of heat tiles (the build's tile files, serve, --site)."""
    _, height, width = rgba.shape
    rows = np.ascontiguousarray(rgba.transpose(1, 2, 0)).reshape(height, width * 4)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def visible_tiles(rgba: Mapping[TileKey, np.ndarray], zoom: int) -> dict[tiles.Tile, bytes]:
    """The PNG tiles of a level's (4, 256, 256) RGBA blocks that show any heat."""
    found = {}
    for x, y in sorted(rgba):  # one block at a time (a Coloured level shades each on reading)
        block = rgba[x, y]
        if block[3].any():
            found[tiles.Tile(x, y, zoom)] = png_tile(block)
    return found


def write_mbtiles(path: Path, pngs: Mapping[tiles.Tile, bytes],
                  metadata: Mapping[str, str]) -> None:
    """MBTiles (1.3) of PNG tiles: the tiles given, at their zooms, and the metadata rows.

    Rows count from the bottom (TMS): tile_row = 2**z - 1 - y.
    """
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE metadata (name TEXT, value TEXT);"
            "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,"
            " tile_data BLOB);"
            "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);"
            "CREATE UNIQUE INDEX name ON metadata (name);")
        db.executemany("INSERT INTO metadata (name, value) VALUES (?, ?)", metadata.items())
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                       ((t.z, t.x, 2**t.z - 1 - t.y, data) for t, data in sorted(
                           pngs.items(), key=lambda item: (item[0].z, item[0].y, item[0].x))))


def write_pmtiles(path: Path, pngs: Mapping[tiles.Tile, bytes], metadata: Mapping[str, str],
                  bounds_lonlat: tuple[float, float, float, float],
                  centre: tuple[float, float, int]) -> None:
    """PMTiles (version 3) of the same PNG tiles, through the `pmtiles` package: tiles in
    tile-id order (a clustered archive), the header's bounds, zooms and centre, and the
    metadata as its JSON."""
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    if not pngs:
        raise OutputError(f"{path}: no tile shows any heat")
    west, south, east, north = bounds_lonlat
    lon, lat, zoom = centre
    header = {
        "tile_type": TileType.PNG, "tile_compression": Compression.NONE,
        "min_lon_e7": round(west * 1e7), "min_lat_e7": round(south * 1e7),
        "max_lon_e7": round(east * 1e7), "max_lat_e7": round(north * 1e7),
        "center_zoom": zoom, "center_lon_e7": round(lon * 1e7), "center_lat_e7": round(lat * 1e7),
    }
    with open(path, "wb") as f:
        writer = Writer(f)
        for tile_id, data in sorted((zxy_to_tileid(t.z, t.x, t.y), data)
                                    for t, data in pngs.items()):
            writer.write_tile(tile_id, data)
        writer.finalize(header, dict(metadata))
