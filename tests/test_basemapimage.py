"""Map tiles as images: a whole tile of a tile's size is decoded, anything else refused."""

import numpy as np
import pytest
from rasterio.io import MemoryFile

from geoheat import basemapimage

from .test_basemap import decoded_sizes, png_claiming, png_tile


def test_decode_tile_expands_palettes_and_grey(tmp_path):
    profile = {"driver": "PNG", "width": 256, "height": 256, "count": 1, "dtype": "uint8"}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(np.full((1, 256, 256), 7, dtype=np.uint8))
            dst.write_colormap(1, {7: (10, 20, 30, 255)})
        paletted = mem.read()
    assert basemapimage.decode_tile(paletted)[:, 0, 0].tolist() == [10, 20, 30]
    with pytest.raises(ValueError):
        basemapimage.decode_tile(b"<html>")


def test_decode_tile_refuses_cut_short_damaged_and_oversized_images(monkeypatch):
    whole = png_tile((10, 20, 30))
    assert basemapimage.decode_tile(whole)[:, 5, 5].tolist() == [10, 20, 30]
    for cut in (len(whole) - 12, len(whole) // 2, 40):  # GDAL would decode these, in black
        with pytest.raises(ValueError, match="broken image"):
            basemapimage.decode_tile(whole[:cut])
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0x10  # one bit inside the image data: its CRC fails
    with pytest.raises(ValueError, match="broken image"):
        basemapimage.decode_tile(bytes(flipped))
    decoded = decoded_sizes(monkeypatch)
    for width, height in ((30000, 30000), (256, 512), (2048, 2048)):
        with pytest.raises(ValueError, match=rf"not a map tile \({width}x{height} px\)"):
            basemapimage.decode_tile(png_claiming(width, height))
    assert decoded == []  # refused from the header, never decoded
    with pytest.raises(ValueError, match="too large"):
        basemapimage.decode_tile(whole + bytes(basemapimage.MAX_TILE_BYTES))
    with pytest.raises(ValueError, match="broken image"):
        basemapimage.decode_tile(b"\xff\xd8\xff\xe0" + bytes(100))  # a JPEG without its end
