"""An MBTiles file as a tile source of geoheat.serve: read-only, served as it is."""

import sqlite3
import threading
from pathlib import Path

from .errors import InputError
from .page import TileFile
from .tiles import MAX_ZOOM
from .tilesource import (DamagedTile, NotFound, bounds_on_earth, file_tile, metadata_zoom,
                         tile_etag)


class MBTilesFile(TileFile):
    """Tiles of an MBTiles file (read-only; TMS rows). What the page needs from its
    metadata (zooms, bounds) is checked when it is opened: InputError, one line."""

    dynamic = False

    def __init__(self, path: Path):
        self.path = path
        try:
            # As a URI (quoted: a name may hold '?' or '#'), to open it read-only.
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                      check_same_thread=False)
        except sqlite3.Error as err:
            raise InputError(f"{path}: cannot open it ({err})") from None
        try:
            rows = self.db.execute("SELECT name, value FROM metadata").fetchall()
            # The tiles' table and columns, and the zooms it holds when metadata has none.
            self.db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles "
                            "LIMIT 0").fetchall()
            self.metadata = {str(name): value for name, value in rows}
            self._meta = self._check_metadata()
        except sqlite3.Error as err:
            self.db.close()
            raise InputError(f"{path}: not an MBTiles file, or damaged ({err})") from None
        except BaseException:
            self.db.close()
            raise
        self.lock = threading.Lock()
        self.format = self._meta["format"]
        stat = path.stat()
        self.identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def _check_metadata(self) -> dict:
        rows, path = self.metadata, self.path
        bounds = None
        if rows.get("bounds") is not None:
            bounds = bounds_on_earth(str(rows["bounds"]).split(","))
            if bounds is None:
                raise InputError(f"{path}: its metadata's bounds are not west,south,east,north "
                                 f"on Earth: {str(rows['bounds'])[:80]!r}")
        zooms = {}
        for key in ("minzoom", "maxzoom"):
            if rows.get(key) is not None:
                zooms[key] = metadata_zoom(rows[key])
                if zooms[key] is None:
                    raise InputError(f"{path}: its metadata's {key} is not a zoom 0-30: "
                                     f"{str(rows[key])[:80]!r}")
        if len(zooms) < 2:  # as the tiles say
            low, high = self.db.execute(
                "SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
            low, high = ((0, MAX_ZOOM) if low is None
                         else (metadata_zoom(low), metadata_zoom(high)))
            if low is None or high is None:
                raise InputError(f"{path}: damaged (a tile's zoom_level is not a zoom 0-30)")
            zooms = {"minzoom": low, "maxzoom": high, **zooms}
        if zooms["minzoom"] > zooms["maxzoom"]:
            raise InputError(f"{path}: its metadata's minzoom {zooms['minzoom']} is above its "
                             f"maxzoom {zooms['maxzoom']}")
        name, description = rows.get("name"), rows.get("description")
        fmt = rows.get("format")
        legend = rows.get("geoheat_legend")
        return {"format": fmt.lower() if isinstance(fmt, str) else "png",
                "name": name if isinstance(name, str) else None,
                "description": description if isinstance(description, str) else "",
                "legend": legend if isinstance(legend, str) else None,
                "bounds": bounds, **zooms}

    def tile(self, z, x, y, query):
        if query:
            raise NotFound("a tile file has no views")
        try:
            with self.lock:
                row = self.db.execute(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                    "AND tile_row = ?", (z, x, 2**z - 1 - y)).fetchone()
        except sqlite3.Error as err:  # a damaged page, or the file changed under us
            raise DamagedTile(f"{self.path}: tile {z}/{x}/{y}: {err}") from None
        data = row[0] if row else None
        if data is not None and not isinstance(data, bytes):  # bytes(5) is 5 zero bytes
            what = {int: "an integer", float: "a real number", str: "text"}.get(type(data))
            raise DamagedTile(f"{self.path}: tile {z}/{x}/{y} is no image ({what}, not a blob)")
        return file_tile(data, self.format, self.etag(z, x, y, query))

    def etag(self, z, x, y, query) -> str:
        return tile_etag(self.identity, z, x, y)
