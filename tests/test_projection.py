"""Longitude/latitude to EPSG:3857: against published values and pyproj as the reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoheat import projection, tiles

lons = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-85.05, 85.05, allow_nan=False)


def test_project_matches_mercantile_corner():
    xy = projection.project(np.array([[-9.140625, 53.33087298301705]]))
    assert xy[0] == pytest.approx([-1017529.7205322663, 7044436.526761846])


def test_project_clamps_polar_latitudes():
    xy = projection.project(np.array([[0.0, 89.9], [0.0, -90.0]]))
    assert xy[:, 1] == pytest.approx([tiles.ORIGIN_SHIFT, -tiles.ORIGIN_SHIFT])


def test_project_equals_pyproj():
    from pyproj import Transformer

    rng = np.random.default_rng(7)
    lonlat = np.column_stack([rng.uniform(-180, 180, 10000), rng.uniform(-85.05, 85.05, 10000)])
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(
        lonlat[:, 0], lonlat[:, 1])
    np.testing.assert_allclose(projection.project(lonlat), np.column_stack([x, y]), atol=1e-6,
                               rtol=0)


@given(lons, lats)
def test_unproject_inverts_project(lon, lat):
    back = projection.unproject(projection.project(np.array([[lon, lat]])))[0]
    assert back == pytest.approx([lon, lat], abs=1e-9)


def test_valid_lonlat_rejects_impossible_positions_and_null_island():
    lonlat = np.array([[10, 45], [np.nan, 1], [181, 0], [0, -91], [-180, 90], [0, 0], [0, 1e-3]])
    assert projection.valid_lonlat(lonlat).tolist() == [True, False, False, False, True, False,
                                                        True]


def test_bounds_box_projects_its_corners():
    box = projection.lonlat_box_to_xy(46.0, 46.1, 14.45, 14.55)
    corners = projection.project(np.array([[14.45, 46.0], [14.55, 46.1]]))
    assert box == pytest.approx([*corners[0], *corners[1]])
