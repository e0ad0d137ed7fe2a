"""Web Mercator tile math: the XYZ (OSM) tile pyramid and its pixel grids.

All metric values are EPSG:3857 metres. A zoom level's pixel grid is the one
tile servers use: 256-pixel tiles, origin at the top-left corner of tile (0, 0).
"""

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from affine import Affine

EARTH_RADIUS = 6378137.0
ORIGIN_SHIFT = math.pi * EARTH_RADIUS  # half the world's width in metres
TILE_SIZE = 256
MAX_ZOOM = 19
MAX_LATITUDE = 85.0511287798066  # where Web Mercator's square world ends

TileKey = tuple[int, int]  # (tile x, tile y) at a grid's zoom: the key of a sparse raster


class Tile(NamedTuple):
    """An XYZ tile: column x, row y (from the top), zoom z."""

    x: int
    y: int
    z: int


class Bbox(NamedTuple):
    """A bounding box: left, bottom, right, top."""

    left: float
    bottom: float
    right: float
    top: float


class Grid(NamedTuple):
    """A window of whole tiles of one zoom level's pixel grid.

    col_off and row_off count pixels from the world's top-left corner.
    """

    zoom: int
    col_off: int
    row_off: int
    width: int
    height: int


def resolution(zoom: int) -> float:
    """Pixel size in metres at a zoom level."""
    return 2 * ORIGIN_SHIFT / (TILE_SIZE * 2**zoom)


def tile(lon: float, lat: float, zoom: int) -> Tile:
    """The tile containing a longitude and latitude (OSM wiki's formula)."""
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    n = 2**zoom
    x = (lon + 180.0) / 360.0 * n
    lat_rad = math.radians(lat)
    y = (1.0 - math.asinh(math.tan(lat_rad)) / math.pi) / 2.0 * n
    return Tile(min(max(int(x), 0), n - 1), min(max(int(y), 0), n - 1), zoom)


def xy_bounds(t: Tile) -> Bbox:
    """A tile's bounds in EPSG:3857 metres."""
    size = 2 * ORIGIN_SHIFT / 2**t.z
    left = -ORIGIN_SHIFT + t.x * size
    top = ORIGIN_SHIFT - t.y * size
    return Bbox(left, top - size, left + size, top)


def grid_covering(bounds: Bbox, zoom: int) -> Grid:
    """The smallest window of whole tiles covering EPSG:3857 bounds at a zoom."""
    res = resolution(zoom)
    world = TILE_SIZE * 2**zoom
    # Pixel edges, with a millionth-of-a-pixel tolerance so that a box edge lying on
    # a tile edge (up to rounding) does not pull in the neighbouring tile.
    eps = 1e-6
    col0 = math.floor((bounds.left + ORIGIN_SHIFT) / res + eps)
    col1 = math.ceil((bounds.right + ORIGIN_SHIFT) / res - eps)
    row0 = math.floor((ORIGIN_SHIFT - bounds.top) / res + eps)
    row1 = math.ceil((ORIGIN_SHIFT - bounds.bottom) / res - eps)
    col1, row1 = max(col1, col0 + 1), max(row1, row0 + 1)
    tx0, ty0 = col0 // TILE_SIZE, row0 // TILE_SIZE
    tx1, ty1 = -(-col1 // TILE_SIZE), -(-row1 // TILE_SIZE)
    # Clamped into the world, at least one tile: a box on the world's edge (tracks
    # beyond 85.0511 degrees, clamped there) still has a tile to draw in.
    last = world // TILE_SIZE - 1
    tx0, ty0 = min(max(tx0, 0), last), min(max(ty0, 0), last)
    tx1, ty1 = max(min(tx1, last + 1), tx0 + 1), max(min(ty1, last + 1), ty0 + 1)
    return Grid(
        zoom,
        tx0 * TILE_SIZE,
        ty0 * TILE_SIZE,
        (tx1 - tx0) * TILE_SIZE,
        (ty1 - ty0) * TILE_SIZE,
    )


def grid_transform(grid: Grid) -> Affine:
    """The affine transform from a grid's (col, row) to EPSG:3857 metres."""
    res = resolution(grid.zoom)
    return Affine(
        res, 0.0, -ORIGIN_SHIFT + grid.col_off * res,
        0.0, -res, ORIGIN_SHIFT - grid.row_off * res,
    )  # fmt: skip


def grid_bounds(grid: Grid) -> Bbox:
    """A grid's bounds in EPSG:3857 metres."""
    res = resolution(grid.zoom)
    left = -ORIGIN_SHIFT + grid.col_off * res
    top = ORIGIN_SHIFT - grid.row_off * res
    return Bbox(left, top - grid.height * res, left + grid.width * res, top)


def grid_tiles(grid: Grid) -> list[Tile]:
    """The tiles a grid is made of, row by row."""
    tx0, ty0 = grid.col_off // TILE_SIZE, grid.row_off // TILE_SIZE
    return [
        Tile(tx, ty, grid.zoom)
        for ty in range(ty0, ty0 + grid.height // TILE_SIZE)
        for tx in range(tx0, tx0 + grid.width // TILE_SIZE)
    ]


def tile_window(key: TileKey, grid: Grid) -> tuple[int, int]:
    """The row and column, in the grid, of the top-left pixel of tile `key`."""
    return key[1] * TILE_SIZE - grid.row_off, key[0] * TILE_SIZE - grid.col_off


def world_pixels(xy: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (column, row) of EPSG:3857 points in the world's pixel grid at zoom.

    Clamped just inside the world, so lon 180 and lat -85.0511 stay in the last pixel.
    """
    res = resolution(zoom)
    last = np.nextafter(float(TILE_SIZE * 2**zoom), 0)
    col = np.clip((xy[:, 0] + ORIGIN_SHIFT) / res, 0, last)
    row = np.clip((ORIGIN_SHIFT - xy[:, 1]) / res, 0, last)
    return col, row


def pixel_centres_xy(rows: np.ndarray, cols: np.ndarray, grid: Grid) -> np.ndarray:
    """(n, 2) EPSG:3857 x, y of the centres of grid pixels."""
    res = resolution(grid.zoom)
    x = -ORIGIN_SHIFT + (grid.col_off + cols + 0.5) * res
    y = ORIGIN_SHIFT - (grid.row_off + rows + 0.5) * res
    return np.column_stack([x, y])


def to_dense(sparse: dict[TileKey, np.ndarray], grid: Grid, dtype=np.float32) -> np.ndarray:
    """A sparse raster (tile key -> 256x256 block) as one (height, width) array over the
    grid, zero where no tile."""
    dense = np.zeros((grid.height, grid.width), dtype=dtype)
    for key, block in sparse.items():
        r, c = tile_window(key, grid)
        dense[r:r + TILE_SIZE, c:c + TILE_SIZE] = block
    return dense


class RowView:
    """A sparse raster read as a (height, width) array one band of rows at a time:
    view[top:stop] is those rows, dense (zero where no tile), so a picture can be made
    in strips without a dense copy of the whole grid (4 bytes a pixel)."""

    def __init__(self, sparse: dict[TileKey, np.ndarray], grid: Grid, dtype=np.float32):
        self.sparse, self.grid, self.dtype = sparse, grid, dtype
        self.shape = (grid.height, grid.width)
        self._by_row: dict[int, list[TileKey]] = {}
        for key in sparse:
            self._by_row.setdefault(tile_window(key, grid)[0], []).append(key)

    def __getitem__(self, rows: slice) -> np.ndarray:
        top, stop, _ = rows.indices(self.shape[0])
        out = np.zeros((stop - top, self.shape[1]), dtype=self.dtype)
        first = top - top % TILE_SIZE
        for row in range(first, stop, TILE_SIZE):
            for key in self._by_row.get(row, ()):
                _, col = tile_window(key, self.grid)
                block = self.sparse[key]
                r0, r1 = max(row, top), min(row + TILE_SIZE, stop)
                out[r0 - top:r1 - top, col:col + TILE_SIZE] = block[r0 - row:r1 - row]
        return out


# A tile is kept in cells of CELL x CELL pixels: at street zoom most of a tile with heat
# is empty (a city's tiles at zoom 16: 1.5% of their pixels lit, a third of their
# 64-pixel cells), and only the cells with data are stored (CellTiles).
CELL = 64
CELLS = TILE_SIZE // CELL  # cells along a tile's side


def cells_of(block: np.ndarray) -> np.ndarray:
    """A (256, 256) block as a (CELLS, CELLS, CELL, CELL) view of its cells."""
    return block.reshape(CELLS, CELL, CELLS, CELL).swapaxes(1, 2)


class CellTiles(Mapping):
    """Sparse tiles (tile key -> (256, 256) block), stored as the blocks' non-zero cells.

    Reading a tile (tiles[key], .items(), .values()) makes its dense block, read-only:
    one tile at a time in memory, not the level. put() packs a block; put_cells() takes
    cells made elsewhere (the blur makes them cell by cell). A level's counts or heat
    take about a third of the dense blocks' memory at street zoom."""

    def __init__(self, dtype, blocks: Mapping | None = None, store=None):
        self.dtype = np.dtype(dtype)  # the blocks' (what reading a tile gives)
        # The cells' own: a narrower one where the values fit (counts below 65,536 as
        # uint16: half the memory; parts() gives them so, a tile read widens them).
        self.store = self.dtype if store is None else np.dtype(store)
        self._cells: dict[TileKey, tuple[np.ndarray, np.ndarray]] = {}
        for key, block in (blocks or {}).items():
            self.put(key, block)

    @classmethod
    def drained(cls, dtype, dense: dict) -> "CellTiles":
        """dense's tiles packed, each taken out of dense as it is packed (its blocks let
        go one by one: no second copy of the level); counts kept as uint16 where the
        largest fits."""
        made = cls(dtype, store=narrowest(dtype, (int(b.max()) for b in dense.values())))
        while dense:
            made.put(*dense.popitem())
        return made

    def put(self, key: TileKey, block: np.ndarray) -> None:
        """Keep block's non-zero cells under key (nothing when all of it is zero)."""
        cells = cells_of(np.asarray(block))
        mask = cells.any(axis=(2, 3))
        if mask.any():
            self._cells[key] = (mask, cells[mask].astype(self.store, copy=True))
        else:
            self._cells.pop(key, None)

    def put_cells(self, key: TileKey, mask: np.ndarray, cells: np.ndarray) -> None:
        """Keep cells ((k, CELL, CELL), the True places of the (CELLS, CELLS) mask, in
        order) under key as they are."""
        self._cells[key] = (mask, cells)

    def cells(self, key: TileKey) -> tuple[np.ndarray, np.ndarray]:
        """The tile's (mask, cells) as put_cells takes them (no dense block made)."""
        return self._cells[key]

    def parts(self):
        """(key, mask, cells) of every tile, as put_cells takes them."""
        for key, (mask, cells) in self._cells.items():
            yield key, mask, cells

    def subset(self, keys) -> "CellTiles":
        """The tiles of keys (those present), sharing their cells."""
        part = CellTiles(self.dtype, store=self.store)
        part._cells = {key: self._cells[key] for key in keys if key in self._cells}
        return part

    def __getitem__(self, key: TileKey) -> np.ndarray:
        mask, cells = self._cells[key]
        block = np.zeros((TILE_SIZE, TILE_SIZE), dtype=self.dtype)
        cells_of(block)[mask] = cells
        block.flags.writeable = False  # a copy: writing to it would change nothing
        return block

    def __contains__(self, key) -> bool:
        return key in self._cells

    def __iter__(self):
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)

    @property
    def nbytes(self) -> int:
        return sum(mask.nbytes + cells.nbytes for mask, cells in self._cells.values())

    def __reduce__(self):
        return _cell_tiles, (self.dtype.str, self.store.str, self._cells)


def _cell_tiles(dtype: str, store: str, cells: dict) -> CellTiles:
    made = CellTiles(dtype, store=store)
    made._cells = cells
    return made


def narrowest(dtype, largest) -> np.dtype:
    """uint16 for unsigned counts whose largest (an iterable of ints) fits, else dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u" and dtype.itemsize > 2 and max(largest, default=0) < 2**16:
        return np.dtype(np.uint16)
    return dtype


def map_pixels(sparse: Mapping, per_pixel, dtype) -> Mapping:
    """per_pixel (an array function of each pixel alone, 0 kept 0) over sparse tiles: on
    CellTiles' cells (a CellTiles back), on a dict's blocks (a dict back)."""
    if isinstance(sparse, CellTiles):
        out = CellTiles(dtype)
        for key, mask, cells in sparse.parts():
            out.put_cells(key, mask, per_pixel(cells))
        return out
    return {key: per_pixel(block) for key, block in sparse.items()}


def nonzero_values(sparse: Mapping) -> list[np.ndarray]:
    """Each tile's non-zero pixel values (from CellTiles' cells: no dense block made)."""
    if isinstance(sparse, CellTiles):
        return [cells[cells != 0] for _, _, cells in sparse.parts()]
    return [block[block != 0] for block in sparse.values()]
