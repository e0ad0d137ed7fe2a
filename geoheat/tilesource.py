"""What every tile source shares with the server: the errors a request can raise
(NotFound: 404, DamagedTile: 500; geoheat.serve.ERRORS maps them), and what a tile
file's source gives (a tile's bytes and ETag; its metadata's bounds and zooms, checked)."""

import hashlib
import re

TILE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
              "webp": "image/webp"}


class NotFound(Exception):
    """A request for something the server does not have: 404."""


class DamagedTile(Exception):
    """A tile a tile file holds but cannot give (damaged, cut short, not an image): 500,
    and one line on stderr; the server goes on serving the others."""


def bounds_on_earth(values) -> list[float] | None:
    """West, south, east, north as floats, or None unless they are a box on Earth."""
    try:
        west, south, east, north = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):  # NaN: False
        return None
    return [west, south, east, north]


def metadata_zoom(value) -> int | None:
    """A zoom level 0-30 from a metadata value (an integer, or its digits), else None."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,2}\s*", value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 30:
        return value
    return None


def file_tile(data, fmt, etag):
    from .render import EMPTY_PNG

    if not data:
        return EMPTY_PNG, "image/png", etag
    return bytes(data), TILE_TYPES.get(fmt, "application/octet-stream"), etag


def tile_etag(identity: str, z: int, x: int, y: int) -> str:
    return '"' + hashlib.sha256(f"{identity}/{z}/{x}/{y}".encode()).hexdigest()[:24] + '"'
