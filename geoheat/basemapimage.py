"""Map tiles as images: whether bytes can be a whole tile, and its pixels.

GDAL decodes a cut-short image without complaint (the lost part black), so an image is
checked (complete, and of a tile's size) before it is decoded or cached; its size is
read from the header before its pixels, so a decompression bomb is refused unread.
"""

import struct
import warnings
import zlib

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from . import tiles

MAX_TILE_BYTES = 4 * 2**20  # a map tile is ~20 KB: a larger answer is not one, nor read whole
MAX_TILE_SIDE = 1024  # px: tiles are 256 or 512 square; a larger image is a decompression bomb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SIGNATURES = (PNG_SIGNATURE, b"\xff\xd8\xff", b"RIFF", b"GIF8")


def tile_problem(data: bytes) -> str | None:
    """Why bytes cannot be a map tile, from a cheap look (no decoding), or None.

    GDAL decodes a cut-short image without complaint (the lost part black), so
    completeness is checked here: PNG chunk by chunk to IEND (CRCs included),
    JPEG to its end marker, WebP to its RIFF size, GIF to its trailer.
    """
    if len(data) > MAX_TILE_BYTES:
        return "too large"
    if not data.startswith(IMAGE_SIGNATURES):
        return "not an image"
    if data.startswith(PNG_SIGNATURE):
        return _png_problem(data)
    if data.startswith(b"\xff\xd8\xff"):
        return None if data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9") else "broken image"
    if data.startswith(b"RIFF"):
        if len(data) < 12 or data[8:12] != b"WEBP":
            return "not an image"
        return None if len(data) >= 8 + struct.unpack("<I", data[4:8])[0] else "broken image"
    return None if data.rstrip(b"\0\r\n ").endswith(b";") else "broken image"  # GIF


def _png_problem(data: bytes) -> str | None:
    view = memoryview(data)
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", view[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        if zlib.crc32(view[pos + 4:end - 4]) != struct.unpack(">I", view[end - 4:end])[0]:
            return "broken image"
        if pos == len(PNG_SIGNATURE):
            if kind != b"IHDR" or length != 13:
                return "broken image"
            width, height = struct.unpack(">II", view[pos + 8:pos + 16])
            if not _tile_sized(width, height):
                return f"not a map tile ({width}x{height} px)"
        if kind == b"IEND":
            return None
        pos = end
    return "broken image"  # cut short before IEND


def _tile_sized(width: int, height: int) -> bool:
    return width == height and 1 <= width <= MAX_TILE_SIDE


def decode_tile(data: bytes) -> np.ndarray:
    """An image tile's bytes as (3, 256, 256) uint8 RGB; ValueError (the reason) if they
    are not a whole image of a tile's size."""
    problem = tile_problem(data)
    if problem:
        raise ValueError(problem)
    try:
        with warnings.catch_warnings():  # a tile has no georeferencing, and needs none
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as src:
                # Opening reads only the header: refuse a bomb before its pixels are decoded.
                if not _tile_sized(src.width, src.height):
                    raise ValueError(f"not a map tile ({src.width}x{src.height} px)")
                return _tile_pixels(src)
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - GDAL's errors, or a layout _tile_pixels cannot take
        raise ValueError("not an image") from None


def _tile_pixels(src) -> np.ndarray:
    """An open tile as (3, 256, 256) uint8 RGB (palettes expanded, grey spread to 3 bands)."""
    shape = (src.count, tiles.TILE_SIZE, tiles.TILE_SIZE)
    pixels = src.read(out_shape=shape, resampling=Resampling.average)
    if src.count == 1 and src.colorinterp[0] == rasterio.enums.ColorInterp.palette:
        table = np.zeros((256, 3), dtype=np.uint8)
        for index, rgba in src.colormap(1).items():
            table[index] = rgba[:3]
        return np.moveaxis(table[pixels[0]], -1, 0)
    if pixels.dtype != np.uint8:
        raise ValueError("not an 8-bit image")
    if len(pixels) < 3:  # grey, or grey and alpha
        return np.repeat(pixels[:1], 3, axis=0)
    return pixels[:3]
