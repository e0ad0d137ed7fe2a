"""Speed and memory features: lines mode, parse cache, parallel reading, sparse tiles."""

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio

import geoheat
from geoheat import cache, heat, reading, tiles
from geoheat.tiles import Grid

ndimage = pytest.importorskip("scipy.ndimage")
EIGHT = np.ones((3, 3), dtype=bool)


def straight(lon0, lat0, lon1, lat1, step_m=50):
    """Points every step_m metres (roughly) on a straight line."""
    km = np.hypot((lon1 - lon0) * 77, (lat1 - lat0) * 111)
    n = max(int(km * 1000 / step_m), 2)
    return list(zip(np.linspace(lon0, lon1, n), np.linspace(lat0, lat1, n)))


def counts_of(tmp_path, **kwargs):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    geoheat.build([tmp_path / "in"], out / "h.png", counts=True, sigma=0, **kwargs)
    with rasterio.open(out / "h-counts.tif") as src:
        return src.read(1), src


def pixel_of(src, lon, lat):
    return src.index(*heat.project(np.array([[lon, lat]]))[0])


def test_lines_mode_draws_an_unbroken_line_at_zoom_17(tmp_path, write_gpx):
    ride = straight(14.50, 46.05, 14.52, 46.06)
    write_gpx("ride.gpx", ride, folder=tmp_path / "in")
    counts, src = counts_of(tmp_path, zoom=17, mode="lines")
    labels, n = ndimage.label(counts > 0, structure=EIGHT)
    assert n == 1
    start, end = pixel_of(src, *ride[0]), pixel_of(src, *ride[-1])
    assert counts[start] > 0 and counts[end] > 0
    # A line is about as many pixels as its longer side (a few more where it cuts
    # pixel corners), not a blob.
    longer = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
    assert longer <= (counts > 0).sum() <= 1.1 * longer
    points, _ = counts_of(tmp_path, zoom=17, mode="points")
    assert ndimage.label(points > 0, structure=EIGHT)[1] > 10  # dotted, as before


def test_lines_mode_does_not_bridge_a_gps_gap(tmp_path, write_gpx):
    first = straight(14.50, 46.05, 14.51, 46.05)
    second = straight(14.536, 46.05, 14.546, 46.05)  # starts 2 km after the first ends
    write_gpx("gap.gpx", first + second, folder=tmp_path / "in")  # one segment, a jump inside
    counts, src = counts_of(tmp_path, zoom=17, mode="lines")
    assert ndimage.label(counts > 0, structure=EIGHT)[1] == 2
    assert counts[pixel_of(src, 14.523, 46.05)] == 0  # nothing drawn in the gap


def test_lines_count_passes(tmp_path, write_gpx):
    there = straight(14.50, 46.05, 14.51, 46.05)
    write_gpx("a.gpx", there + there[::-1], folder=tmp_path / "in")  # out and back
    write_gpx("b.gpx", there, folder=tmp_path / "in")
    counts, src = counts_of(tmp_path, zoom=16, mode="lines")
    assert counts[pixel_of(src, 14.505, 46.05)] == 3


def test_select_points_cuts_segments_where_points_go():
    xy = np.arange(20, dtype=float).reshape(10, 2)
    keep = np.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 1], dtype=bool)
    kept, offsets = heat.select_points(xy, np.array([0, 5, 10]), keep)
    assert len(kept) == 7
    assert offsets.tolist() == [0, 2, 4, 6, 7]  # cut at 2, at the old segment start, and at 7-8


def test_split_gaps_measures_ground_distance():
    # 250 m steps on the ground at latitude 60 are 500 m of Web Mercator.
    y = heat.project(np.array([[0.0, 60.0]]))[0, 1]
    xy = np.array([[0, y], [500, y], [1000, y], [5000, y]], dtype=float)
    assert heat.split_gaps(xy, np.array([0, 4])).tolist() == [0, 3, 4]


def scatter(rng, n=3000):
    """Points in a 1.5 km square spanning several zoom-16 tiles."""
    lon = rng.normal(14.505, 0.004, n)
    lat = rng.normal(46.052, 0.003, n)
    return heat.project(np.column_stack([lon, lat]))


@pytest.mark.parametrize("sigma", [0, 1, 3.5])
def test_sparse_equals_dense(sigma):
    xy = scatter(np.random.default_rng(5))
    grid = tiles.grid_covering(heat.points_bounds(xy), 16)
    assert grid.width > 256 and grid.height > 256  # tile borders inside
    dense = heat.blur(heat.cdf_scale(heat.count_points(xy, grid)), sigma)
    rows, cols = heat.point_pixels(xy, 16)
    counts = heat.tile_counts(rows, cols, grid)
    np.testing.assert_array_equal(heat.to_dense(counts, grid, np.uint32),
                                  heat.count_points(xy, grid))
    sparse = heat.blur_tiles(heat.cdf_scale_tiles(counts), sigma, grid)
    np.testing.assert_array_equal(heat.to_dense(sparse, grid), dense)
    linear = heat.blur_tiles(heat.linear_scale_tiles(counts), sigma, grid)
    np.testing.assert_array_equal(heat.to_dense(linear, grid),
                                  heat.blur(heat.linear_scale(heat.count_points(xy, grid)), sigma))


def test_blur_has_no_seam_at_tile_borders():
    grid = Grid(16, 35000 * 256, 23000 * 256, 512, 256)
    line = np.zeros((256, 512), dtype=np.uint32)
    line[128, :] = 1  # a road across the border between the two tiles
    blurred = heat.to_dense(heat.blur_tiles(heat.from_dense(line.astype(np.float32), grid),
                                            2.0, grid), grid)
    profile = blurred[120:137, 250:262]  # across the border at column 256
    assert np.allclose(profile, profile[:, :1], atol=1e-6)  # the same all along the road
    assert blurred[124, 255] > 0 and blurred[124, 256] > 0


@pytest.fixture
def rides(tmp_path, write_gpx):
    folder = tmp_path / "in"
    for i in range(6):
        write_gpx(f"r{i}.gpx", straight(14.50 + i * 0.002, 46.05, 14.52, 46.06 + i * 0.001),
                  folder=folder)
    return folder


def tif_bytes(path):
    return path.with_suffix(".tif").read_bytes()


def test_cached_and_uncached_builds_are_identical(tmp_path, rides, monkeypatch):
    calls = []
    real = reading.parse_file
    monkeypatch.setattr(reading, "parse_file", lambda path: calls.append(path) or real(path))
    store = tmp_path / "cache"
    geoheat.build([rides], tmp_path / "a.png", zoom=15)
    geoheat.build([rides], tmp_path / "b.png", zoom=15, parse_cache=store)
    assert len(calls) == 12
    geoheat.build([rides], tmp_path / "c.png", zoom=15, parse_cache=store)
    assert len(calls) == 12  # all from the cache
    assert tif_bytes(tmp_path / "a.png") == tif_bytes(tmp_path / "b.png") == tif_bytes(
        tmp_path / "c.png")


def test_a_changed_file_is_read_again(tmp_path, rides, write_gpx):
    store = tmp_path / "cache"
    before = geoheat.build([rides], tmp_path / "a.png", zoom=15, parse_cache=store)
    write_gpx("r0.gpx", straight(14.50, 46.05, 14.53, 46.07, step_m=20), folder=rides)
    after = geoheat.build([rides], tmp_path / "a.png", zoom=15, parse_cache=store)
    assert after.points_used > before.points_used
    # Same bytes, new modification time: read again (size and mtime are the key).
    path = rides / "r1.gpx"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.load(store, path) is None


def test_a_corrupt_cache_entry_is_ignored_and_rewritten(tmp_path, rides):
    store = tmp_path / "cache"
    geoheat.build([rides], tmp_path / "a.png", zoom=15, parse_cache=store)
    entries = sorted(store.rglob("*.bin"))
    assert len(entries) == 6
    entries[0].write_bytes(b"garbage")
    entries[1].write_bytes(entries[1].read_bytes()[:100])  # cut short
    geoheat.build([rides], tmp_path / "b.png", zoom=15, parse_cache=store)
    assert tif_bytes(tmp_path / "a.png") == tif_bytes(tmp_path / "b.png")
    assert all(cache.load(store, p) is not None for p in sorted(rides.glob("*.gpx")))


def test_unreadable_files_are_cached_as_skipped(tmp_path, rides):
    (rides / "bad.gpx").write_text("<gpx><trk>")
    store = tmp_path / "cache"
    first = geoheat.build([rides], tmp_path / "a.png", parse_cache=store)
    second = geoheat.build([rides], tmp_path / "a.png", parse_cache=store)
    assert first.skipped == second.skipped and len(second.skipped) == 1


def test_two_runs_at_once_share_a_cache(tmp_path, rides):
    store = tmp_path / "cache"
    runs = [subprocess.Popen([sys.executable, "-m", "geoheat", "build", str(rides), "-q",
                              "--basemap", "none", "--cache", str(store), "-o",
                              str(tmp_path / f"{name}.png")], stderr=subprocess.PIPE)
            for name in ("x", "y")]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    assert all(cache.load(store, p) is not None for p in sorted(rides.glob("*.gpx")))
    assert tif_bytes(tmp_path / "x.png") == tif_bytes(tmp_path / "y.png")


def test_jobs_2_equals_jobs_1_bit_for_bit(tmp_path, rides):
    one = geoheat.build([rides], tmp_path / "one.png", zoom=15, jobs=1, csv=True)
    two = geoheat.build([rides], tmp_path / "two.png", zoom=15, jobs=2, csv=True)
    assert one.points_used == two.points_used
    assert tif_bytes(tmp_path / "one.png") == tif_bytes(tmp_path / "two.png")
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
