"""The extent stage: the main area of the tracks, --bounds, and the automatic zoom."""

import numpy as np
import pytest

from geoheat import extent, tiles
from geoheat.projection import project
from geoheat.summary import summarize


def summaries_of(*activities):
    """Summaries of activities given as (n, 2) lon, lat arrays."""
    return [summarize(project(np.asarray(a, float)), np.array([0, len(a)])) for a in activities]


def test_one_activity_keeps_its_main_area_and_leaves_glitches_out():
    rng = np.random.default_rng(0)
    home = np.column_stack([rng.uniform(104.0, 104.1, 5000), rng.uniform(30.5, 30.6, 5000)])
    glitch = np.array([[110.0, 35.0]])
    track = np.vstack([home, glitch])
    keep = extent.inside(project(track), extent.main_area(summaries_of(track)))
    assert keep[:5000].all() and not keep[5000:].any()


def test_one_long_continuous_track_is_one_area():
    lon = np.linspace(5.0, 6.5, 20000)  # a 110 km ride: every cell touches the next
    track = np.column_stack([lon, np.full_like(lon, 45.0)])
    assert extent.inside(project(track), extent.main_area(summaries_of(track))).all()


def city_rides_and_trips(rng):
    """300 short runs in a city, five 200 km rides out of it, 20 activities abroad and a
    lake loop of many points: the shapes that misled an extent chosen by points."""
    city = [np.column_stack([rng.uniform(104.0, 104.08, 40), rng.uniform(30.6, 30.66, 40)])
            for _ in range(300)]
    rides = [np.column_stack([np.linspace(104.04, 104.04 + 2.0 * np.cos(a), 2000),
                              np.linspace(30.63, 30.63 + 1.2 * np.sin(a), 2000)])
             for a in np.linspace(0.3, 2.8, 5)]
    abroad = [np.column_stack([rng.uniform(2.3, 2.4, 50), rng.uniform(48.8, 48.9, 50)])
              for _ in range(20)]
    theta = np.linspace(0, 2 * np.pi, 60000)  # one lake loop, 60,000 points, 100 km away
    lake = [np.column_stack([105.0 + 0.1 * np.cos(theta), 30.0 + 0.08 * np.sin(theta)])]
    return city, rides, abroad, lake


def test_the_area_most_activities_visit_wins_and_rare_stretches_are_trimmed():
    city, rides, abroad, lake = city_rides_and_trips(np.random.default_rng(2))
    activities = city + rides + abroad + lake
    lonlat = np.vstack(activities)
    area = extent.main_area(summaries_of(*activities))
    west, south = project(np.array([[104.0, 30.6]]))[0]
    east, north = project(np.array([[104.08, 30.66]]))[0]
    # The city fills the extent: the rides' far ends, the trips abroad and the lake
    # (more points than all the city's runs together) are left out.
    assert area.left >= west - 12_000 and area.right <= east + 12_000
    assert area.bottom >= south - 12_000 and area.top <= north + 12_000
    assert area.left <= west + 1 and area.right >= east - 1
    box, area_again = extent.choose_area(summaries_of(*activities), None, "auto")
    assert box == area_again == area
    keep = extent.inside(project(lonlat), box)
    # All but the city's rarest fringe (a cell's sliver few runs reach) is drawn.
    assert keep[:300 * 40].mean() > 0.995


def test_choose_zoom_is_largest_that_fits():
    box = tiles.xy_bounds(tiles.Tile(486, 332, 10))
    assert extent.choose_zoom(box, 256) == 10
    assert extent.choose_zoom(box, 1024) == 12
    assert extent.choose_zoom(box, 1023) == 11


def test_bounds_are_the_box_and_the_area():
    summaries = summaries_of([(14.5, 46.05), (14.6, 46.05), (15.5, 46.05)])
    box, area = extent.choose_area(summaries, (46.0, 46.1, 14.45, 14.65), "auto")
    assert box == area == pytest.approx(extent.points_bounds(project(np.array(
        [[14.45, 46.0], [14.65, 46.1]]))))


def test_extent_all_covers_every_point():
    track = [(14.5, 46.05), (120.0, -30.0)]
    box, area = extent.choose_area(summaries_of(track), None, "all")
    assert box is None and area == extent.points_bounds(project(np.array(track)))


def test_the_area_from_summaries_equals_the_area_from_the_points():
    # The summary keeps, per cell, the bounds of the activity's points there: the
    # area chosen from summaries is bit for bit the bounds of the chosen points.
    city, rides, abroad, lake = city_rides_and_trips(np.random.default_rng(9))
    activities = city[:50] + rides + abroad[:5]
    area = extent.main_area(summaries_of(*activities))
    xy = project(np.vstack(activities))
    assert extent.points_bounds(xy[extent.inside(xy, area)]) == area


def test_without_a_home_area_the_most_points_win():
    # A handful of files from anywhere (a device test set): two short walks in one
    # place must not beat a long ride elsewhere.
    walks = [[(10.0 + i * 1e-4, 50.0) for i in range(20)], [(10.0, 50.0 + i * 1e-4) for i in range(17)]]
    ride = [(-3.0 + i * 1e-3, 40.0 + i * 5e-4) for i in range(13000)]
    area = extent.main_area(summaries_of(*walks, ride))
    x, _ = project(np.array([[-3.0, 40.0]]))[0]
    assert area.left == pytest.approx(x)
