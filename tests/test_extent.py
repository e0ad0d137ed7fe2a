"""The extent stage: the main area of the tracks, --bounds, and the automatic zoom."""

import numpy as np
import pytest

from geoheat import extent, tiles
from geoheat.errors import InputError
from geoheat.projection import project


def test_main_cluster_leaves_out_glitches_and_far_trips():
    rng = np.random.default_rng(0)
    home = np.column_stack([rng.uniform(104.0, 104.1, 5000), rng.uniform(30.5, 30.6, 5000)])
    trip = np.column_stack([rng.uniform(103.8, 103.85, 500), rng.uniform(29.95, 30.0, 500)])
    glitch = np.array([[0.0, 0.0], [110.0, 35.0]])
    xy = project(np.vstack([home, trip, glitch]))
    keep = extent.main_cluster(xy)
    assert keep[:5000].all() and not keep[5000:].any()


def test_main_cluster_keeps_one_long_continuous_track():
    lon = np.linspace(5.0, 6.5, 20000)  # a 110 km ride: every cell touches the next
    xy = project(np.column_stack([lon, np.full_like(lon, 45.0)]))
    assert extent.main_cluster(xy).all()


def test_choose_zoom_is_largest_that_fits():
    box = tiles.xy_bounds(tiles.Tile(486, 332, 10))
    assert extent.choose_zoom(box, 256) == 10
    assert extent.choose_zoom(box, 1024) == 12
    assert extent.choose_zoom(box, 1023) == 11


def test_bounds_keep_the_points_inside_and_are_the_area():
    xy = project(np.array([[14.5, 46.05], [14.6, 46.05], [15.5, 46.05]]))
    keep, area = extent.select_extent(xy, (46.0, 46.1, 14.45, 14.65), "auto")
    assert keep.tolist() == [True, True, False]
    assert area == pytest.approx(extent.points_bounds(project(np.array(
        [[14.45, 46.0], [14.65, 46.1]]))))
    with pytest.raises(InputError, match="no trackpoint lies inside --bounds"):
        extent.select_extent(xy, (10.0, 11.0, 10.0, 11.0), "auto")


def test_extent_all_keeps_every_point():
    xy = project(np.array([[14.5, 46.05], [120.0, -30.0]]))
    keep, area = extent.select_extent(xy, None, "all")
    assert keep.all() and area == extent.points_bounds(xy)
