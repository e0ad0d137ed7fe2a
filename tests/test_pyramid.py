"""The tile pyramid: every level of the MBTiles, PMTiles and COG overviews from its own counts."""

import contextlib
import sqlite3
import threading

import numpy as np
import pytest
import rasterio
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import TileType
from rasterio.io import MemoryFile

import geoheat
from geoheat.rasterize import count_tracks
from geoheat import heat, pyramid, tiles
from geoheat.colormaps import lut, with_alpha
from geoheat.colour import shade_rgba
from geoheat.heat import cdf_scale_tiles
from geoheat.projection import project

from .conftest import shared_folder

ZOOM = 16
# A ride of ~6 km, drawn once, and a loop ridden 20 times beside it: one pass and many.
RIDE = [(104.00 + 0.0006 * i, 30.60 + 0.0002 * i) for i in range(100)]
LOOP = [(104.03 + 0.003 * np.cos(a), 30.62 + 0.002 * np.sin(a))
        for a in np.linspace(0, 2 * np.pi, 80)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pyramid")
    (folder / "ride.gpx").write_text(geoheat.samples.gpx_document([np.array(RIDE)]))
    for i in range(20):  # 20 rides of one loop, each its own (its points a hair apart)
        loop = np.array(LOOP) + [0.0, 1e-7 * i]
        (folder / f"loop{i}.gpx").write_text(geoheat.samples.gpx_document([loop]))
    out = folder / "out"
    out.mkdir()
    result = geoheat.build([folder], out / "h.tif", zoom=ZOOM, sigma=1, counts=True,
                           extent="all", rgba_tif=True, mbtiles=out / "h.mbtiles",
                           pmtiles=out / "h.pmtiles")
    return out, result


def mbtiles(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
        metadata = dict(db.execute("SELECT name, value FROM metadata"))
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")
        found = {tiles.Tile(x, 2**z - 1 - row, z): bytes(data) for z, x, row, data in rows}
    return metadata, found


def decode(data):
    with MemoryFile(data) as mem, mem.open() as png:
        return png.read()


def test_default_min_zoom_is_where_the_extent_fits_one_tile():
    grid = tiles.grid_covering(tiles.xy_bounds(tiles.Tile(51_000, 27_000, 16)), 16)
    assert pyramid.default_min_zoom(grid) == 16
    wide = grid._replace(width=256 * 5, height=256 * 3)  # tiles 51000-51004, 27000-27002
    zoom = pyramid.default_min_zoom(wide)
    low = pyramid.level_grid(wide, zoom)
    assert low.width == low.height == 256
    higher = pyramid.level_grid(wide, zoom + 1)
    assert higher.width > 256 or higher.height > 256
    assert pyramid.default_min_zoom(tiles.Grid(3, 0, 0, 256 * 8, 256 * 8)) == 0


def test_overview_window_is_whole_pixels_of_the_lower_grid():
    grid = tiles.Grid(16, 256 * 51_001, 256 * 27_003, 256 * 5, 256 * 3)
    for k in range(1, 9):
        low = pyramid.level_grid(grid, 16 - k)
        window = pyramid.overview_window(grid, low)
        assert (window.width, window.height) == (grid.width / 2**k, grid.height / 2**k)
        assert low.col_off + window.col == grid.col_off / 2**k
        assert 0 <= window.row and window.row + window.height <= low.height


def test_the_files_and_their_levels(built):
    out, result = built
    assert {p.name for p in result.outputs} == {
        "h.tif", "h.qml", "h-rgba.tif", "h-counts.tif", "h.mbtiles", "h.pmtiles"}
    assert not (out / "h.png").exists()  # -o names the GeoTIFF: no PNG, no basemap
    metadata, found = mbtiles(out / "h.mbtiles")
    zooms = sorted({t.z for t in found})
    min_zoom = pyramid.default_min_zoom(result.grid)
    assert zooms == list(range(min_zoom, ZOOM + 1)) and min_zoom <= ZOOM - 4
    assert (metadata["minzoom"], metadata["maxzoom"]) == (str(min_zoom), str(ZOOM))
    assert sum(t.z == min_zoom for t in found) == 1  # all the heat in one tile


def test_a_track_drawn_once_reads_as_well_at_every_level(built):
    out, _ = built
    _, found = mbtiles(out / "h.mbtiles")
    by_zoom = {}
    for t, data in found.items():
        by_zoom.setdefault(t.z, []).append(decode(data))
    medians = {}
    for z, blocks in by_zoom.items():
        rgba = np.stack(blocks)
        alpha = rgba[:, 3]
        medians[z] = np.median(alpha[alpha > 0])
        assert not ((alpha == 255) & (rgba[:, :3].max(axis=1) == 0)).any(), z  # no black boxes
    assert min(medians) <= ZOOM - 4
    for z in medians:
        assert medians[z] >= 0.8 * medians[ZOOM], (z, medians)


def ride_counted(out, grid, zooms):
    """The counts of the levels at zooms, from the same tracks as the build (as written)."""
    parts = [project(geoheat.read_gpx(path).segments[0])
             for path in sorted(out.parent.glob("*.gpx"))]
    xy = np.concatenate(parts)
    offsets = np.cumsum([0] + [len(p) for p in parts])
    return [(low, count_tracks(xy, offsets, low, "lines"))
            for low in (pyramid.level_grid(grid, zoom) for zoom in zooms)]


def ride_levels(out, result):
    """The pyramid's levels as the build made them, from the same tracks (as written)."""
    grid = result.grid
    zooms = pyramid.zooms_below(grid, grid.zoom - pyramid.overview_count(grid))
    return grid, list(pyramid.levels(ride_counted(out, grid, zooms), cdf_scale_tiles, 1.0))


def test_cog_overviews_are_each_levels_own_heat_counts_and_colours(built):
    out, result = built
    grid, levels = ride_levels(out, result)
    assert levels  # the grid is more than one tile: there are overviews
    rgba_lut = with_alpha(lut("hot"))
    for name, pick in (("h.tif", lambda lv: lv.heat), ("h-counts.tif", lambda lv: lv.counts)):
        with rasterio.open(out / name) as src:
            assert src.overviews(1) == [2**k for k in range(1, len(levels) + 1)]
            tags = src.tags(ns="TILING_SCHEME")
            assert tags == {"NAME": "GOOGLEMAPSCOMPATIBLE", "ZOOM_LEVEL": str(ZOOM)}
            assert src.transform == tiles.grid_transform(grid)  # not resampled
        for i, level in enumerate(levels):
            window = pyramid.overview_window(grid, level.grid)
            dense = tiles.to_dense(pick(level), level.grid, np.float64)
            expected = dense[window.row:window.row + window.height,
                             window.col:window.col + window.width]
            with rasterio.open(out / name, overview_level=i) as ov:
                np.testing.assert_array_equal(ov.read(1), expected, err_msg=f"{name} level {i}")
                # Its pixels are the lower zoom's XYZ pixels: it lines up with web map tiles.
                origin = tiles.grid_transform(level.grid) @ (window.col, window.row)
                assert ov.transform.a == pytest.approx(tiles.resolution(level.grid.zoom))
                assert (ov.transform.c, ov.transform.f) == pytest.approx(origin, abs=1e-6)
    with rasterio.open(out / "h-rgba.tif", overview_level=0) as ov:
        level = levels[0]
        window = pyramid.overview_window(grid, level.grid)
        dense = tiles.to_dense(level.heat, level.grid)
        expected = shade_rgba(dense[window.row:window.row + window.height,
                                    window.col:window.col + window.width], rgba_lut)
        np.testing.assert_array_equal(ov.read(), expected)


def test_counts_overviews_sum_the_passes_of_their_own_zoom(built):
    out, result = built
    with rasterio.open(out / "h-counts.tif") as src:
        top = int(src.read(1).max())
    with rasterio.open(out / "h-counts.tif", overview_level=2) as ov:
        low = ov.read(1)
    assert top >= 20 and low.max() >= top  # the loop's 20 passes, at least, not an average
    # Every level's heat is the busiest count's where the loop runs (its top colour, near
    # 1): heat overviews are heat, not averages.
    with rasterio.open(out / "h.tif", overview_level=2) as ov:
        assert ov.read(1).max() > 0.99


def test_pmtiles_holds_the_same_tiles_as_the_mbtiles(built):
    out, result = built
    metadata, found = mbtiles(out / "h.mbtiles")
    with open(out / "h.pmtiles", "rb") as f:
        source = MmapSource(f)
        reader = Reader(source)
        header, meta = reader.header(), reader.metadata()
        archived = {tiles.Tile(x, y, z): bytes(data) for (z, x, y), data in all_tiles(source)}
        assert reader.get(*next((t.z, t.x, t.y) for t in found)) is not None
    assert archived == found
    assert header["tile_type"] == TileType.PNG
    assert (header["min_zoom"], header["max_zoom"]) == (int(metadata["minzoom"]), ZOOM)
    west, south, east, north = (float(v) for v in metadata["bounds"].split(","))
    assert header["min_lon_e7"] == round(west * 1e7) and header["max_lat_e7"] == round(north * 1e7)
    assert west < header["center_lon_e7"] / 1e7 < east
    assert str(header["center_zoom"]) == metadata["center"].split(",")[2]
    assert meta["description"] == metadata["description"]


def test_output_may_name_the_mbtiles_and_explicit_min_zoom_holds(tmp_path, write_gpx):
    write_gpx("a.gpx", RIDE)
    result = geoheat.build([tmp_path], tmp_path / "t.mbtiles", zoom=14, min_zoom=12,
                           basemap="osm")  # no PNG, so no map is fetched (tests are offline)
    assert {p.name for p in result.outputs} == {"t.mbtiles"}  # just the tiles
    assert result.basemap is None
    _, found = mbtiles(tmp_path / "t.mbtiles")
    assert sorted({t.z for t in found}) == [12, 13, 14, 15, 16]  # up to street zoom
    # Other outputs asked for still come, named by the stem; the counts with their pyramid.
    result = geoheat.build([tmp_path], tmp_path / "u.pmtiles", zoom=14, counts=True, csv=True)
    assert {p.name for p in result.outputs} == {"u.pmtiles", "u-counts.tif", "u.csv", "u.csvt"}
    with rasterio.open(tmp_path / "u-counts.tif") as src:
        assert src.tags(ns="TILING_SCHEME")["ZOOM_LEVEL"] == "14"


def test_chengdu_levels_read_as_well_as_the_top(tmp_path):
    """Real runs at zoom 16: the issue's target, median alpha of lit pixels at every level
    >= 0.8 x the top level's, and no opaque black."""
    geoheat.build([shared_folder("chengdu-runs")], tmp_path / "c.tif", zoom=16, mbtiles=tmp_path / "c.mbtiles",
                  min_zoom=10)
    _, found = mbtiles(tmp_path / "c.mbtiles")
    medians, black = {}, {}
    for z in range(10, 17):
        rgba = np.stack([decode(d) for t, d in found.items() if t.z == z])
        alpha = rgba[:, 3]
        medians[z] = np.median(alpha[alpha > 0])
        black[z] = ((alpha == 255) & (rgba[:, :3].max(axis=1) == 0)).mean()
    print("median alpha by zoom", medians)
    assert all(medians[z] >= 0.8 * medians[16] for z in medians), medians
    assert max(black.values()) == 0, black


def test_tiles_reach_street_zoom_each_level_from_its_own_counts(tmp_path, write_gpx):
    # A zoom 12 build's tiles go up to --max-zoom (default 16): the levels above the
    # output's are drawn from their own counts, as `geoheat serve` draws them.
    from geoheat.reading import read_files
    from geoheat.render import Renderer
    from geoheat.sources import find_sources

    write_gpx("a.gpx", RIDE)
    write_gpx("b.gpx", LOOP)
    options = geoheat.BuildOptions(inputs=[tmp_path], output=tmp_path / "t.mbtiles", zoom=12,
                                   max_zoom=14, parse_cache=None)
    geoheat.build(options)
    metadata, found = mbtiles(tmp_path / "t.mbtiles")
    assert max(t.z for t in found) == 14 and metadata["maxzoom"] == "14"
    renderer = Renderer(options, read_files(find_sources(options.inputs), None))
    for t, data in found.items():
        if t.z > 12:
            np.testing.assert_array_equal(decode(data), renderer.rgba_tile(t.z, t.x, t.y))
    # --max-zoom below the output's zoom: the tiles stop there; above --min-zoom only.
    geoheat.build([tmp_path], tmp_path / "u.mbtiles", zoom=14, max_zoom=13, min_zoom=12)
    assert sorted({t.z for t in mbtiles(tmp_path / "u.mbtiles")[1]}) == [12, 13]
    with pytest.raises(geoheat.ParameterError, match="min zoom 15 is above max zoom 13"):
        geoheat.build([tmp_path], tmp_path / "v.mbtiles", max_zoom=13, min_zoom=15)


def test_tiles_stop_below_street_zoom_when_memory_is_short(tmp_path, write_gpx, monkeypatch):
    # The levels above the output's are counted with the rest: where they would not fit
    # in half the memory free, the default stops lower and says so.
    from geoheat import pipeline

    write_gpx("a.gpx", RIDE)
    monkeypatch.setattr(pipeline, "available_memory", lambda: 16 * 2**20)
    warnings = []
    geoheat.build([tmp_path], tmp_path / "t.mbtiles", zoom=12, on_warning=warnings.append)
    top = max(t.z for t in mbtiles(tmp_path / "t.mbtiles")[1])
    assert 12 <= top < 16
    assert any(w.startswith(f"tiles stop at zoom {top}:") for w in warnings), warnings


def test_levels_blurred_on_threads_are_the_levels_blurred_on_one(built, monkeypatch):
    """The levels' blur on 2 threads (in batches of 4 cells: many in flight): the same
    levels, in order, bit for bit, as on one."""
    monkeypatch.setattr(heat, "CELL_BATCH", 4)
    out, result = built
    counted = ride_counted(out, result.grid, pyramid.zooms_below(result.grid, 10))
    alone = list(pyramid.levels(counted, cdf_scale_tiles, 1.5, workers=1))
    threaded = list(pyramid.levels(iter(counted), cdf_scale_tiles, 1.5, workers=2))
    assert len(alone) == len(threaded) == len(counted) >= 3
    for one, other in zip(alone, threaded):
        assert one.grid == other.grid and one.counts is other.counts
        assert set(one.heat) == set(other.heat)
        for key, mask, cells in one.heat.parts():
            got_mask, got_cells = other.heat.cells(key)
            assert (got_mask == mask).all() and got_cells.tobytes() == cells.tobytes()
    assert not [t for t in threading.enumerate() if t.name.startswith("geoheat-")]
