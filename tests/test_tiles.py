"""Tile math against published values (mercantile's docs, the OSM wiki's zoom table)."""

import math

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
