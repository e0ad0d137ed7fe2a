"""geoheat.build end to end: pixel positions, georeferencing, filters, outputs."""

import csv
import math
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio

import geoheat
from geoheat import InputError, ParameterError, pipeline, tiles
from geoheat.colormaps import lut
from geoheat.colour import lut_index
from geoheat.projection import project

SPOT = (14.50123, 46.05012)  # lon, lat of a known point


def osm_pixel(lon, lat, zoom):
    """Global pixel (col, row) by the OSM wiki's formula, independent of geoheat."""
    n = 256 * 2**zoom
    col = (lon + 180) / 360 * n
    row = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return math.floor(col), math.floor(row)


def track_around(lon, lat, n=5, step=0.01):
    """A short track ending a few km from (lon, lat), so the spot is not alone."""
    return [(lon + step * i, lat + step * i / 2) for i in range(1, n + 1)]


@pytest.mark.parametrize("zoom", [10, 15])
def test_known_point_lands_in_its_geotiff_pixel(tmp_path, write_gpx, zoom):
    write_gpx("spot.gpx", [SPOT] * 20, track_around(*SPOT))
    result = geoheat.build([tmp_path], tmp_path / "out.png", zoom=zoom, sigma=0, mode="points")
    assert result.zoom == zoom
    with rasterio.open(tmp_path / "out-heat.tif") as src:
        assert src.crs.to_epsg() == 3857
        assert src.nodata == 0 and src.dtypes == ("float32",)
        x, y = project(np.array([SPOT]))[0]
        row, col = src.index(x, y)
        band = src.read(1)
        assert band[row, col] > 0.9  # the busiest pixel: the top of the ranks
        assert np.unravel_index(band.argmax(), band.shape) == (row, col)
        # The same pixel by the OSM formula: the GeoTIFF is on the tile pixel grid.
        res = tiles.resolution(zoom)
        col0 = round((src.transform.c + tiles.ORIGIN_SHIFT) / res)
        row0 = round((tiles.ORIGIN_SHIFT - src.transform.f) / res)
        assert (col0 + col, row0 + row) == osm_pixel(*SPOT, zoom)
        assert col0 % 256 == 0 and row0 % 256 == 0
        assert src.width % 256 == 0 and src.height % 256 == 0
        assert src.transform.a == pytest.approx(res)


def test_geotiff_layout_tags_and_overviews(tmp_path, write_gpx):
    write_gpx("a.gpx", track_around(*SPOT, n=40, step=0.002))
    geoheat.build([tmp_path], tmp_path / "h.png", zoom=16, sigma=1.5, cdist=False)
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name.lower() == "deflate"
        assert src.overviews(1) and src.overviews(1)[0] == 2
        tags = src.tags()
        assert tags["ZOOM"] == "16" and tags["SIGMA"] == "1.5" and tags["SCALING"] == "linear"
        assert tags["FILES"] == "1" and tags["POINTS"] == "40"
        assert tags["GEOHEAT_VERSION"] == geoheat.__version__
        band = src.read(1)
        assert band.min() >= 0 and band.max() == pytest.approx(1.0)
    with rasterio.open(tmp_path / "h.png") as png:
        assert (png.count, png.dtypes[0]) == (3, "uint8")
        assert (png.width, png.height) == (src.width, src.height)


def test_png_is_hot_where_heat_is(tmp_path, write_gpx):
    write_gpx("spot.gpx", [SPOT] * 10, track_around(*SPOT))
    geoheat.build([tmp_path], tmp_path / "h.png", zoom=12, sigma=0, mode="points")
    with rasterio.open(tmp_path / "h-heat.tif") as tif, rasterio.open(tmp_path / "h.png") as png:
        row, col = tif.index(*project(np.array([SPOT]))[0])
        rgb = png.read()
        tif_heat = tif.read(1)[row, col]
    # The busiest pixel: the top of the ranks, near white in 'hot' (mid-rank of 10 pixels)
    assert rgb[:, row, col].tolist() == lut("hot")[lut_index(tif_heat)].tolist()
    assert rgb[2, row, col] >= 128
    assert rgb[:, 0, 0].tolist() == [0, 0, 0]  # no heat: black background


def test_csv_lists_hot_pixel_centres(tmp_path, write_gpx):
    write_gpx("spot.gpx", [SPOT] * 10, track_around(*SPOT))
    result = geoheat.build([tmp_path], tmp_path / "h.png", zoom=14, sigma=0, csv=True,
                           mode="points")
    assert result.outputs[-1] == tmp_path / "h.csv"
    with open(tmp_path / "h.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["latitude", "longitude", "intensity"]
    hottest = max(rows, key=lambda r: float(r["intensity"]))
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert float(hottest["intensity"]) == pytest.approx(float(src.read(1).max()))
    # The pixel centre is within half a pixel of the spot.
    half = 360 / (256 * 2**14) / 2
    assert abs(float(hottest["longitude"]) - SPOT[0]) <= half
    assert abs(float(hottest["latitude"]) - SPOT[1]) <= half
    assert all(float(r["intensity"]) > 0.1 for r in rows)
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert len(rows) == int((src.read(1) > 0.1).sum())


def test_year_filter_uses_activity_start(tmp_path, write_gpx):
    def on(year):
        return datetime(year, 6, 1, tzinfo=timezone.utc)

    write_gpx("2023.gpx", [(14.50, 46.05)] * 3, start=on(2023))
    write_gpx("2024.gpx", [(14.51, 46.05)] * 5, start=on(2024))
    write_gpx("none.gpx", [(14.52, 46.05)] * 7)
    result = geoheat.build([tmp_path], tmp_path / "h.png", years=[2024], zoom=12)
    assert result.points_used == 5
    assert result.left_out == {"other years": 1, "no time, so no year": 1}
    assert geoheat.build([tmp_path], tmp_path / "h.png", years=[2023, 2024]).points_used == 8
    assert geoheat.build([tmp_path], tmp_path / "h.png").points_used == 15
    with pytest.raises(InputError, match="nothing to draw.*left out"):
        geoheat.build([tmp_path], tmp_path / "h.png", years=[1999])


def test_glob_filter(tmp_path, write_gpx):
    write_gpx("Morning-Ride.gpx", [(14.50, 46.05)] * 3)
    write_gpx("Evening-Run.gpx", [(14.51, 46.05)] * 5)
    result = geoheat.build([tmp_path], tmp_path / "h.png", pattern="*Ride*.gpx")
    assert (result.files, result.points_used) == (1, 3)


def test_bounds_keep_points_inside_and_fix_the_extent(tmp_path, write_gpx):
    write_gpx("a.gpx", [(14.50, 46.05)] * 3, [(14.70, 46.05)] * 5)
    box = (46.0, 46.1, 14.45, 14.55)  # LAT_MIN LAT_MAX LON_MIN LON_MAX
    result = geoheat.build([tmp_path], tmp_path / "h.png", bounds=box, zoom=12)
    assert (result.points_used, result.points_outside) == (3, 5)
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        left, bottom = project(np.array([[14.45, 46.0]]))[0]
        right, top = project(np.array([[14.55, 46.1]]))[0]
        b = src.bounds
        assert b.left <= left and b.right >= right and b.bottom <= bottom and b.top >= top
        assert b.right - b.left < (right - left) + 2 * 256 * src.res[0]  # whole tiles, no more
    with pytest.raises(InputError, match="inside --bounds"):
        geoheat.build([tmp_path], tmp_path / "h.png", bounds=(10, 11, 10, 11))


def test_auto_extent_leaves_out_a_glitch_and_all_keeps_it(tmp_path, write_gpx):
    write_gpx("a.gpx", track_around(*SPOT, n=50, step=0.001) + [(-20.0, 10.0)])
    auto = geoheat.build([tmp_path], tmp_path / "h.png")
    assert (auto.points_used, auto.points_outside) == (50, 1)
    assert auto.zoom >= 15
    everything = geoheat.build([tmp_path], tmp_path / "h.png", extent="all")
    assert (everything.points_used, everything.points_outside) == (51, 0)
    assert everything.zoom < auto.zoom
    glitch_x = project(np.array([[-20.0, 10.0]]))[0, 0]
    assert tiles.grid_bounds(everything.grid).left <= glitch_x


def test_invalid_positions_are_dropped(tmp_path):
    (tmp_path / "odd.gpx").write_text(
        '<gpx version="1.1"><trk><trkseg><trkpt lat="46" lon="14.5"/><trkpt lat="95" lon="14.5"/>'
        '<trkpt lat="46" lon="14.51"/></trkseg></trk></gpx>')
    result = geoheat.build([tmp_path], tmp_path / "h.png")
    assert (result.points_read, result.points_invalid, result.points_used) == (3, 1, 2)


@pytest.mark.parametrize("kwargs", [{"zoom": 20}, {"zoom": -2}, {"zoom": "x"}, {"sigma": -1}, {"sigma": 51},
                                    {"max_size": 10}, {"extent": "some"}])
def test_bad_parameters_raise_before_reading(tmp_path, kwargs):
    with pytest.raises(ParameterError):
        geoheat.build([tmp_path / "not-read"], tmp_path / "h.png", **kwargs)


def test_huge_grid_is_refused_not_allocated(tmp_path, write_gpx):
    write_gpx("wide.gpx", [(-10.0, 40.0), (10.0, 55.0)])
    with pytest.raises(ParameterError, match="lower --zoom"):
        geoheat.build([tmp_path], tmp_path / "h.png", zoom=19, extent="all")
    assert not list(tmp_path.glob("h.*"))


def test_large_sparse_grid_writes_geotiff_but_no_png(tmp_path, write_gpx):
    # Two short rides 10 km apart at zoom 17: a ~9,500 px square grid (90 Mpx), 4 tiles of data.
    write_gpx("a.gpx", [(14.50, 46.05), (14.501, 46.05)], [(14.60, 46.12), (14.601, 46.12)])
    warnings = []
    result = geoheat.build([tmp_path], tmp_path / "h.png", zoom=17, extent="all",
                           on_warning=warnings.append)
    assert result.grid.width * result.grid.height > pipeline.MAX_PNG_PIXELS
    assert result.data_tiles <= 8
    assert not (tmp_path / "h.png").exists()
    assert len(warnings) == 1 and "no PNG for a" in warnings[0] and "lower --zoom" in warnings[0]
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert (src.width, src.height) == (result.grid.width, result.grid.height)
        x, y = project(np.array([[14.5005, 46.05]]))[0]
        row, col = src.index(x, y)
        assert src.read(1, window=((row, row + 1), (col, col + 1)))[0, 0] > 0
        assert src.overviews(1)[-1] >= 32


def test_outputs_replace_old_ones_and_leave_no_temp_files(tmp_path, write_gpx):
    write_gpx("a.gpx", track_around(*SPOT))
    out = tmp_path / "out"
    out.mkdir()
    (out / "h.png").write_text("old")
    geoheat.build([tmp_path], out / "h.png", csv=True)
    assert sorted(p.name for p in out.iterdir()) == [
        ".h.geoheat-lock", "h-heat.qml", "h-heat.tif", "h.csv", "h.csvt", "h.pgw", "h.png",
        "h.png.aux.xml"]
    assert (out / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_failed_write_leaves_nothing_behind(tmp_path, write_gpx, monkeypatch):
    write_gpx("a.gpx", track_around(*SPOT))

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", str(args[0]))

    monkeypatch.setattr(geoheat.writers, "write_geotiff", broken)
    with pytest.raises(geoheat.OutputError) as caught:
        geoheat.build([tmp_path], tmp_path / "out.png")
    assert str(caught.value) == f"{tmp_path / 'out-heat.tif'}: cannot write (no space left on the device)"
    assert [p.name for p in tmp_path.iterdir()] == ["a.gpx"]


def ride(lon0, lat0, n=200, step=0.0004):
    return [(lon0 + i * step, lat0 + 0.3 * i * step) for i in range(n)]


def test_converter_metadata_times_do_not_make_distinct_rides_duplicates(tmp_path, write_gpx):
    # A converter wrote its own run time into every file's <metadata><time>: the same
    # start, different tracks. Only the truly repeated ride is a duplicate.
    converted = datetime(2019, 5, 1, 12, 0, tzinfo=timezone.utc)
    for i in range(5):
        write_gpx(f"ride{i}.gpx", ride(14.50 + 0.01 * i, 46.05), start=converted)
    write_gpx("ride0-again.gpx", ride(14.50, 46.05)[::2], start=converted)  # the same ride
    result = geoheat.build([tmp_path], tmp_path / "h.png", zoom=14)
    assert result.duplicates == 1 and result.activities == 5
    kept = geoheat.build([tmp_path], tmp_path / "h.png", zoom=14, keep_duplicates=True)
    assert kept.duplicates == 0 and kept.activities == 6
    # The same start and the same first point, but a ride twice as long: not the same.
    write_gpx("ride0-longer.gpx", ride(14.50, 46.05, n=400), start=converted)
    assert geoheat.build([tmp_path], tmp_path / "h.png", zoom=14).duplicates == 1


def test_activities_wholly_outside_the_extent_are_left_out_and_reported(tmp_path, write_gpx):
    for i in range(6):
        write_gpx(f"home{i}.gpx", ride(14.50, 46.05 + 0.001 * i))
    write_gpx("trip.gpx", ride(2.35, 48.85))  # Paris
    result = geoheat.build([tmp_path], tmp_path / "h.png", zoom=14)
    assert result.activities == 6 and result.left_out == {"outside the extent": 1}
    assert result.points_outside == 200
    trip = [e for e in result.entries if e.path.endswith("trip.gpx")][0]
    assert (trip.status, trip.reason) == ("left_out", "outside the extent")


def test_tracks_beyond_web_mercators_edge_are_drawn_at_the_edge(tmp_path, write_gpx):
    write_gpx("south.gpx", [(10.0 + i * 0.001, -87.0) for i in range(50)])
    result = geoheat.build([tmp_path], tmp_path / "h.png", zoom=6)
    assert result.grid.height == 256 and result.points_used == 50
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert src.read(1)[-1].max() > 0  # the last row of the world holds them
    with pytest.raises(ParameterError, match="beyond Web Mercator"):
        geoheat.build([tmp_path], tmp_path / "h.png", bounds=(-90, -86, 0, 20))


def test_points_read_are_used_outside_invalid_or_left_out(tmp_path, write_gpx):
    converted = datetime(2019, 5, 1, 12, 0, tzinfo=timezone.utc)
    for i in range(4):
        write_gpx(f"ride{i}.gpx", ride(14.50 + 0.01 * i, 46.05) + [(14.5, 95.0)], start=converted)
    write_gpx("again.gpx", ride(14.50, 46.05)[::2], start=converted)  # a duplicate: 100 points
    write_gpx("trip.gpx", ride(2.35, 48.85))  # no time, far away
    result = geoheat.build([tmp_path], tmp_path / "h.png", zoom=14)
    assert result.duplicates == 1 and result.points_invalid == 4
    assert result.points_left_out == 100 and result.points_outside == 200
    assert result.points_read == (result.points_used + result.points_outside
                                  + result.points_invalid + result.points_left_out)
    by_year = geoheat.build([tmp_path], tmp_path / "h.png", zoom=14, years=[2019])
    assert by_year.points_left_out == 200 + 100  # the trip has no time, the duplicate
    assert by_year.points_read == (by_year.points_used + by_year.points_outside
                                   + by_year.points_invalid + by_year.points_left_out)


@pytest.mark.parametrize("jobs", [1, 3])
def test_jobs_bounds_the_blurs_threads(tmp_path, write_gpx, monkeypatch, jobs):
    """--jobs is how many cores a build may take: the blur's threads too (at most the
    cores there are), for the output's zoom and every pyramid level alike."""
    from geoheat import checks, pyramid

    asked = []
    for module in (pipeline, pyramid):
        real = module.blur_tiles

        def spy(*args, _real=real, workers=None, **kwargs):
            asked.append(workers)
            return _real(*args, workers=workers, **kwargs)

        monkeypatch.setattr(module, "blur_tiles", spy)
    monkeypatch.setattr(checks, "available_cores", lambda: 2)
    monkeypatch.setattr(pipeline, "available_cores", lambda: 2)
    write_gpx("a.gpx", [(14.50, 46.05), (14.52, 46.06)])
    geoheat.build([tmp_path / "a.gpx"], tmp_path / "h.png", zoom=15, jobs=jobs,
                  basemap=None)
    assert len(asked) > 1 and set(asked) == {min(jobs, 2)}
