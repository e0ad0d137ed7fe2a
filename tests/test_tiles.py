"""Tile math against published values (mercantile's docs, the OSM wiki's zoom table)."""

import math
import pickle

import pytest

from geoheat import tiles
from geoheat.tiles import Bbox, Grid, Tile


@pytest.mark.parametrize(
    "lon, lat, zoom, expected",
    [
        (-9.140625 + 1e-9, 53.33087298301705 - 1e-9, 10, Tile(486, 332, 10)),  # mercantile README
        (-105.0, 40.0, 9, Tile(106, 193, 9)),  # mercantile CLI example: tile [106, 193, 9]
        (0.0, 0.0, 1, Tile(1, 1, 1)),
        (-180.0, 85.0511, 0, Tile(0, 0, 0)),
        (180.0, -89.9, 3, Tile(7, 7, 3)),  # far edges clamp into the last tile
    ],
)
def test_tile_of_known_points(lon, lat, zoom, expected):
    assert tiles.tile(lon, lat, zoom) == expected


def test_xy_bounds_match_mercantile():
    bounds = tiles.xy_bounds(Tile(486, 332, 10))
    expected = Bbox(-1017529.7205322663, 7005300.768279833, -978393.962050256, 7044436.526761846)
    assert bounds == pytest.approx(expected, abs=1e-6)


def test_resolution_matches_osm_wiki_table():
    assert tiles.resolution(0) == pytest.approx(156543.03, abs=0.01)
    assert tiles.resolution(18) == pytest.approx(0.597, abs=0.001)


def test_grid_covers_whole_tiles():
    box = tiles.xy_bounds(Tile(486, 332, 10))
    inner = Bbox(box.left + 10, box.bottom + 10, box.right - 10, box.top - 10)
    grid = tiles.grid_covering(inner, 10)
    assert grid == Grid(10, 486 * 256, 332 * 256, 256, 256)
    assert tiles.grid_bounds(grid) == pytest.approx(box)
    assert tiles.grid_tiles(grid) == [Tile(486, 332, 10)]
    # One zoom deeper the same box needs its 2x2 children.
    deeper = tiles.grid_covering(inner, 11)
    assert (deeper.width, deeper.height) == (512, 512)
    assert set(tiles.grid_tiles(deeper)) == {Tile(x, y, 11) for x in (972, 973) for y in (664, 665)}


def test_grid_edge_on_tile_edge_adds_no_tile():
    assert tiles.grid_covering(tiles.xy_bounds(Tile(5, 6, 4)), 4) == Grid(4, 5 * 256, 6 * 256, 256, 256)


def test_grid_transform_puts_pixel_corners_on_tile_corners():
    grid = Grid(10, 486 * 256, 332 * 256, 512, 256)
    transform = tiles.grid_transform(grid)
    left, top = transform @ (0, 0)
    box = tiles.xy_bounds(Tile(486, 332, 10))
    assert (left, top) == pytest.approx((box.left, box.top))
    right, bottom = transform @ (256, 256)
    assert (right, bottom) == pytest.approx((box.right, box.bottom))
    assert transform.a == pytest.approx(2 * math.pi * 6378137 / (256 * 2**10))


# Property tests: mercantile, the reference implementation of this tile math.
mercantile = pytest.importorskip("mercantile")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import numpy as np  # noqa: E402

lons = st.floats(-179.999, 179.999, allow_nan=False)
lats = st.floats(-85.05, 85.05, allow_nan=False)
zooms = st.integers(0, tiles.MAX_ZOOM)


def assert_same_tile_or_on_its_edge(got_x, got_y, lon, lat, zoom):
    """mercantile and geoheat may round a point on a tile edge differently: allow only
    that (a neighbour, with the point within a millionth of a tile of the edge)."""
    expected = mercantile.tile(lon, lat, zoom)
    if (got_x, got_y) == (expected.x, expected.y):
        return
    assert abs(got_x - expected.x) <= 1 and abs(got_y - expected.y) <= 1
    edge = mercantile.xy_bounds(expected)
    x, y = mercantile.xy(lon, lat)
    assert min(abs(x - edge.left), abs(x - edge.right), abs(y - edge.top),
               abs(y - edge.bottom)) < 1e-6 * tiles.resolution(zoom) * 256


@given(lons, lats, zooms)
def test_tile_equals_mercantiles(lon, lat, zoom):
    got = tiles.tile(lon, lat, zoom)
    assert got.z == zoom
    assert_same_tile_or_on_its_edge(got.x, got.y, lon, lat, zoom)


@given(st.integers(0, tiles.MAX_ZOOM).flatmap(
    lambda z: st.tuples(st.integers(0, 2**z - 1), st.integers(0, 2**z - 1), st.just(z))))
def test_xy_bounds_equal_mercantiles(xyz):
    tile = Tile(*xyz)
    assert tiles.xy_bounds(tile) == pytest.approx(tuple(mercantile.xy_bounds(*xyz)), abs=1e-6)


@given(lons, lats, zooms)
def test_world_pixels_fall_in_the_tile_of_the_point(lon, lat, zoom):
    from geoheat.projection import project

    col, row = tiles.world_pixels(project(np.array([[lon, lat]])), zoom)
    assert_same_tile_or_on_its_edge(int(col[0] // 256), int(row[0] // 256), lon, lat, zoom)


@given(st.integers(0, 12).flatmap(
    lambda z: st.tuples(st.just(z), st.integers(0, 2**z - 1), st.integers(0, 2**z - 1))))
def test_tile_window_is_where_the_tiles_pixels_start(zxy):
    zoom, x, y = zxy
    grid = tiles.grid_covering(tiles.xy_bounds(Tile(max(x - 1, 0), max(y - 1, 0), zoom)), zoom)
    grid = grid._replace(width=grid.width + 512, height=grid.height + 512)
    row, col = tiles.tile_window((x, y), grid)
    left, top = tiles.grid_transform(grid) @ (col, row)
    assert (left, top) == pytest.approx((tiles.xy_bounds(Tile(x, y, zoom)).left,
                                         tiles.xy_bounds(Tile(x, y, zoom)).top), abs=1e-6)


def test_a_box_on_the_worlds_bottom_edge_still_covers_a_tile():
    bottom = -tiles.ORIGIN_SHIFT
    grid = tiles.grid_covering(Bbox(0.0, bottom, 1000.0, bottom), 5)
    assert grid.height == 256 and grid.row_off + grid.height == 256 * 2**5


def _blocks(seed: int = 1, n: int = 6, dtype=np.uint32, largest: int = 9):
    """Sparse tiles with a few lit pixels each (some cells empty), as counts are."""
    rng = np.random.default_rng(seed)
    blocks = {}
    for i in range(n):
        block = np.zeros((256, 256), dtype=dtype)
        rows, cols = rng.integers(0, 256, 40), rng.integers(0, 120, 40)  # right half empty
        block[rows, cols] = rng.integers(1, largest + 1, 40)
        blocks[(100 + i, 200 - i)] = block
    return blocks


def test_cell_tiles_give_back_the_blocks_they_were_given():
    blocks = _blocks()
    blocks[(1, 1)] = np.zeros((256, 256), dtype=np.uint32)  # nothing in it: not kept
    packed = tiles.CellTiles(np.uint32, blocks)
    assert set(packed) == set(blocks) - {(1, 1)} and len(packed) == len(blocks) - 1
    for key in packed:
        block = packed[key]
        assert block.dtype == np.uint32 and not block.flags.writeable  # a copy: read-only
        np.testing.assert_array_equal(block, blocks[key])
        mask, cells = packed.cells(key)
        assert mask.shape == (4, 4) and not mask[:, 2:].any()  # the empty half not stored
        assert len(cells) == mask.sum()
    assert packed.nbytes < sum(b.nbytes for b in blocks.values()) / 2
    again = pickle.loads(pickle.dumps(packed))
    assert all(np.array_equal(again[k], packed[k]) for k in packed)
    part = packed.subset([(100, 200), (7, 7)])
    assert list(part) == [(100, 200)] and part.cells((100, 200))[1] is packed.cells((100, 200))[1]


@pytest.mark.parametrize("largest, store", [(65535, np.uint16), (65536, np.uint32)])
def test_counts_are_kept_narrow_only_where_they_fit(largest, store):
    blocks = _blocks(largest=3)
    blocks[(100, 200)][5, 5] = largest
    expected = {key: block.copy() for key, block in blocks.items()}
    packed = tiles.CellTiles.drained(np.uint32, blocks)
    assert not blocks  # each block let go as it was packed
    assert packed.store == store
    for key, block in expected.items():
        assert packed[key].dtype == np.uint32
        np.testing.assert_array_equal(packed[key], block)


def test_per_pixel_work_on_cells_is_the_work_on_blocks():
    blocks = _blocks(seed=4)
    packed = tiles.CellTiles(np.uint32, blocks)

    def per_pixel(block):
        return np.sqrt(block.astype(np.float32))

    on_cells = tiles.map_pixels(packed, per_pixel, np.float32)
    on_blocks = tiles.map_pixels(blocks, per_pixel, np.float32)
    assert isinstance(on_cells, tiles.CellTiles) and isinstance(on_blocks, dict)
    for key in blocks:
        np.testing.assert_array_equal(on_cells[key], on_blocks[key])
    assert sorted(np.concatenate(tiles.nonzero_values(packed)).tolist()) == \
        sorted(np.concatenate(tiles.nonzero_values(blocks)).tolist())
