"""The array steps: projection, counting, scaling, blur, extent and zoom choice."""

import numpy as np
import pytest

from geoheat import heat, tiles
from geoheat.colormaps import HOT
from geoheat.errors import ParameterError
from geoheat.tiles import Grid


def test_project_matches_mercantile_corner():
    xy = heat.project(np.array([[-9.140625, 53.33087298301705]]))
    assert xy[0] == pytest.approx([-1017529.7205322663, 7044436.526761846])


def test_project_clamps_polar_latitudes():
    xy = heat.project(np.array([[0.0, 89.9], [0.0, -90.0]]))
    assert xy[:, 1] == pytest.approx([tiles.ORIGIN_SHIFT, -tiles.ORIGIN_SHIFT])


def test_valid_lonlat_rejects_impossible_positions():
    lonlat = np.array([[10, 45], [np.nan, 1], [181, 0], [0, -91], [-180, 90]])
    assert heat.valid_lonlat(lonlat).tolist() == [True, False, False, False, True]


def test_count_points_puts_points_in_their_pixels():
    grid = Grid(1, 0, 0, 512, 512)  # the whole world at zoom 1
    res = tiles.resolution(1)
    # Centres of pixels (row 10, col 20) and (row 300, col 500), the first one twice.
    cols, rows = np.array([20, 20, 500]), np.array([10, 10, 300])
    xy = np.column_stack([-tiles.ORIGIN_SHIFT + (cols + 0.5) * res,
                          tiles.ORIGIN_SHIFT - (rows + 0.5) * res])
    counts = heat.count_points(xy, grid)
    assert counts.dtype == np.uint32
    assert counts[10, 20] == 2 and counts[300, 500] == 1 and counts.sum() == 3


def test_count_points_drops_points_outside_grid():
    grid = Grid(10, 486 * 256, 332 * 256, 256, 256)
    outside = heat.project(np.array([[0.0, 0.0]]))
    assert heat.count_points(outside, grid).sum() == 0


def test_cdf_scale_is_monotonic_and_in_unit_interval():
    rng = np.random.default_rng(1)
    counts = rng.zipf(1.8, size=(64, 64)).astype(np.uint32)
    counts[rng.random((64, 64)) < 0.6] = 0
    scaled = heat.cdf_scale(counts)
    nonzero = counts > 0
    assert (scaled[~nonzero] == 0).all()
    assert scaled[nonzero].min() > 0 and scaled.max() == pytest.approx(1.0)
    order = np.argsort(counts[nonzero], kind="stable")
    assert (np.diff(scaled[nonzero][order]) >= 0).all()


def test_cdf_scale_known_values():
    counts = np.array([[0, 1, 1, 2], [0, 10, 0, 1]], dtype=np.uint32)
    # Non-zero counts: 1, 1, 1, 2, 10 -> CDF at 1 is 3/5, at 2 is 4/5, at 10 is 1.
    np.testing.assert_allclose(heat.cdf_scale(counts), [[0, 0.6, 0.6, 0.8], [0, 1.0, 0, 0.6]])


def test_cdf_keeps_a_hot_pixel_from_washing_out_the_rest():
    counts = np.ones((10, 10), dtype=np.uint32)
    counts[0, 0] = 10_000
    assert heat.linear_scale(counts)[5, 5] == pytest.approx(1e-4)
    assert heat.cdf_scale(counts)[5, 5] == pytest.approx(0.99)


def test_blur_spreads_heat_and_rescales_to_one():
    scaled = np.zeros((21, 21), dtype=np.float32)
    scaled[10, 10] = 0.5
    blurred = heat.blur(scaled, 2.0)
    assert blurred.max() == pytest.approx(1.0) and np.unravel_index(blurred.argmax(), blurred.shape) == (10, 10)
    assert blurred[10, 13] > 0 and blurred[10, 13] < blurred[10, 11]
    assert heat.blur(scaled, 0).tolist() == (scaled * 2).tolist()
    with pytest.raises(ParameterError):
        heat.blur(scaled, -1)


def test_shade_uses_colormap_and_background():
    values = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    rgb = heat.shade(values, HOT, background=(1, 2, 3))
    assert rgb.shape == (3, 1, 3)
    assert rgb[:, 0, 0].tolist() == [1, 2, 3]
    assert rgb[:, 0, 1].tolist() == [255, 255, 255]  # 'hot' ends white
    assert rgb[:, 0, 2].tolist() == HOT[128].tolist()


def test_main_cluster_leaves_out_glitches_and_far_trips():
    rng = np.random.default_rng(0)
    home = np.column_stack([rng.uniform(104.0, 104.1, 5000), rng.uniform(30.5, 30.6, 5000)])
    trip = np.column_stack([rng.uniform(103.8, 103.85, 500), rng.uniform(29.95, 30.0, 500)])
    glitch = np.array([[0.0, 0.0], [110.0, 35.0]])
    xy = heat.project(np.vstack([home, trip, glitch]))
    keep = heat.main_cluster(xy)
    assert keep[:5000].all() and not keep[5000:].any()


def test_main_cluster_keeps_one_long_continuous_track():
    lon = np.linspace(5.0, 6.5, 20000)  # a 110 km ride: every cell touches the next
    xy = heat.project(np.column_stack([lon, np.full_like(lon, 45.0)]))
    assert heat.main_cluster(xy).all()


def test_choose_zoom_is_largest_that_fits():
    box = tiles.xy_bounds(tiles.Tile(486, 332, 10))
    assert heat.choose_zoom(box, 256) == 10
    assert heat.choose_zoom(box, 1024) == 12
    assert heat.choose_zoom(box, 1023) == 11


@pytest.mark.parametrize("box", [(10, 5, 0, 1), (0, 1, 5, 5), (-95, 0, 0, 1), (0, 1, 0, 200)])
def test_bad_bounds_are_refused(box):
    with pytest.raises(ParameterError, match="bounds"):
        heat.lonlat_box_to_xy(*box)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_filter_matches_scipy(sigma):
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    image = (rng.random((40, 57)) > 0.9).astype(np.float32) * rng.random((40, 57)).astype(np.float32)
    expected = scipy_ndimage.gaussian_filter(image, sigma, mode="constant")
    np.testing.assert_allclose(heat.gaussian_filter(image, sigma), expected, atol=1e-6)
