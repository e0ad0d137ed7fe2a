"""Tracks to sparse counts: pixels of points and lines, gaps, passes."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import rasterio

import geoheat
from geoheat import rasterize, tiles
from geoheat.extent import points_bounds
from geoheat.projection import project
from geoheat.tiles import Grid

from . import reference
from .conftest import straight

ndimage = pytest.importorskip("scipy.ndimage")
EIGHT = np.ones((3, 3), dtype=bool)


def counts_of(tmp_path, **kwargs):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    # Only the counts are read: a GeoTIFF output spares encoding a PNG of the whole grid.
    geoheat.build([tmp_path / "in"], out / "h.tif", counts=True, sigma=0, **kwargs)
    with rasterio.open(out / "h-counts.tif") as src:
        return src.read(1), src


def pixel_of(src, lon, lat):
    return src.index(*project(np.array([[lon, lat]]))[0])


def test_points_land_in_their_pixels():
    grid = Grid(1, 0, 0, 512, 512)  # the whole world at zoom 1
    res = tiles.resolution(1)
    # Centres of pixels (row 10, col 20) and (row 300, col 500), the first one twice.
    cols, rows = np.array([20, 20, 500]), np.array([10, 10, 300])
    xy = np.column_stack([-tiles.ORIGIN_SHIFT + (cols + 0.5) * res,
                          tiles.ORIGIN_SHIFT - (rows + 0.5) * res])
    counts = tiles.to_dense(rasterize.count_tracks(xy, np.array([0, 3]), grid, "points"), grid,
                            np.uint32)
    assert counts[10, 20] == 2 and counts[300, 500] == 1 and counts.sum() == 3


def test_points_outside_the_grid_are_dropped():
    grid = Grid(10, 486 * 256, 332 * 256, 256, 256)
    outside = project(np.array([[0.0, 0.0]]))
    assert rasterize.count_tracks(outside, np.array([0, 1]), grid, "points") == {}


def test_tile_counts_equal_the_dense_reference():
    xy, grid, counts = reference.scattered_counts()
    assert all(block.dtype == np.uint32 and block.shape == (256, 256) for block in counts.values())
    np.testing.assert_array_equal(tiles.to_dense(counts, grid, np.uint32),
                                  reference.count_points(xy, grid))


def test_select_points_cuts_segments_where_points_go():
    xy = np.arange(20, dtype=float).reshape(10, 2)
    keep = np.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 1], dtype=bool)
    kept, offsets = rasterize.select_points(xy, np.array([0, 5, 10]), keep)
    assert len(kept) == 7
    assert offsets.tolist() == [0, 2, 4, 6, 7]  # cut at 2, at the old segment start, and at 7-8


def test_split_gaps_breaks_only_at_real_breaks():
    # 250 m steps on the ground at latitude 60 are 500 m of Web Mercator.
    y = project(np.array([[0.0, 60.0]]))[0, 1]
    xy = np.array([[0, y], [500, y], [1000, y], [1500, y], [3500, y], [8000, y]], float)
    offsets = np.array([0, 6])
    # 250 m in 30 s (a ride), 250 m in 1 s (a glitch: 900 km/h), 250 m after a 20 min
    # pause, 1 km in 1 min (a simplified track: a line), 2.25 km in 2 s (too fast).
    times = np.array([0, 30, 31, 31 + 1200, 31 + 1260, 31 + 1262], float)
    assert rasterize.split_gaps(xy, offsets, times).tolist() == [0, 5, 6]
    # Steps under 300 m are never breaks; the same track a little longer:
    far = xy.copy()
    far[:, 0] *= 2  # now 500 m on the ground per 1000 m of Mercator
    assert rasterize.split_gaps(far, offsets, times).tolist() == [0, 2, 3, 5, 6]
    # Without times a track is a line, but for a jump no simplification makes (> 50 km).
    assert rasterize.split_gaps(far, offsets).tolist() == [0, 6]
    glitch = np.vstack([xy, [[8000 + 2 * 60_000, y]]])
    assert rasterize.split_gaps(glitch, np.array([0, 7])).tolist() == [0, 6, 7]
    # Empty segments (offsets repeated) end nowhere: the jump is still a break.
    assert rasterize.split_gaps(glitch, np.array([0, 0, 7])).tolist() == [0, 6, 7]
    assert rasterize.split_gaps(glitch, np.array([0, 7, 7])).tolist() == [0, 6, 7]


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


def timed(points, start=datetime(2024, 5, 1, 8, tzinfo=timezone.utc), every=10, pause_at=None,
          pause=0):
    """Times every `every` seconds, with a pause of `pause` seconds before point pause_at."""
    out = []
    for i in range(len(points)):
        out.append(start + timedelta(seconds=i * every + (pause if pause_at is not None
                                                          and i >= pause_at else 0)))
    return out


def test_lines_mode_does_not_bridge_a_recording_pause(tmp_path, write_gpx):
    first = straight(14.50, 46.05, 14.51, 46.05)
    second = straight(14.536, 46.05, 14.546, 46.05)  # starts 2 km after the first ends
    track = first + second
    write_gpx("gap.gpx", track, folder=tmp_path / "in",  # one segment, a pause inside
              times=[timed(track, pause_at=len(first), pause=1800)])
    counts, src = counts_of(tmp_path, zoom=17, mode="lines")
    assert ndimage.label(counts > 0, structure=EIGHT)[1] == 2
    assert counts[pixel_of(src, 14.523, 46.05)] == 0  # nothing drawn in the gap


def test_a_simplified_track_is_a_line_not_dots(tmp_path, write_gpx):
    # A track thinned to a point every ~600 m (as simplifying exporters do), with
    # times and without: one unbroken line at every zoom.
    ride = straight(14.45, 46.03, 14.60, 46.10, step_m=600)
    write_gpx("simplified.gpx", ride, folder=tmp_path / "in", times=[timed(ride, every=90)])
    write_gpx("untimed.gpx", [(lon, lat + 0.02) for lon, lat in ride], folder=tmp_path / "in")
    for zoom in (13, 16):
        counts, src = counts_of(tmp_path, zoom=zoom, mode="lines")
        assert ndimage.label(counts > 0, structure=EIGHT)[1] == 2  # two lines, no dots


def test_lines_count_passes(tmp_path, write_gpx):
    there = straight(14.50, 46.05, 14.51, 46.05)
    write_gpx("a.gpx", there + there[::-1], folder=tmp_path / "in")  # out and back
    write_gpx("b.gpx", there, folder=tmp_path / "in")
    counts, src = counts_of(tmp_path, zoom=16, mode="lines")
    assert counts[pixel_of(src, 14.505, 46.05)] == 3


def test_what_cannot_fit_in_memory_is_refused_before_the_tiles_are_made():
    lon = np.linspace(14.0, 15.0, 2000)  # 77 km east-west
    xy = project(np.column_stack([lon, np.full_like(lon, 46.0)]))
    grid = tiles.grid_covering(points_bounds(xy), 18)
    offsets = np.array([0, len(xy)])
    with pytest.raises(rasterize.TooBig, match=r"more than fit in the 0\.0 GB of memory free"):
        rasterize.count_tracks(xy, offsets, grid, "lines", memory=1000)
    with pytest.raises(rasterize.TooBig, match=r"the heat lies in [\d,]+ tiles at zoom 18"):
        rasterize.count_tracks(xy, offsets, grid, "lines", memory=2**27)
    assert len(rasterize.count_tracks(xy, offsets, grid, "lines", memory=2**31)) > 500


def test_line_pixels_follow_the_sampling_rule_step_by_step():
    # The vectorised sampling (one sample a point where every step stays within a pixel,
    # np.repeat elsewhere) against the rule written out sample by sample: segments empty,
    # of one point, of sub-pixel and of long steps, at the world's edge, with privacy's
    # filter asked of every sample.
    rng = np.random.default_rng(3)

    def hide(start, end, t):  # hides by where a sample lies along its step
        return ((start * 7 + end) % 5 == 0) | (t > 0.6)

    for trial in range(200):
        n = int(rng.integers(1, 30))
        xy = rng.uniform(-1e7, 1e7, 2) + np.cumsum(rng.normal(0, 10 ** rng.uniform(0, 3),
                                                              (n, 2)), axis=0)
        if trial % 10 == 0:
            xy[:, 0] = -tiles.ORIGIN_SHIFT + rng.uniform(0, 30, n)  # the world's west edge
        offsets = np.sort(np.concatenate([[0, n], rng.integers(0, n + 1, trial % 4)]))
        zoom = int(rng.integers(8, 18))
        for hidden in (None, hide):
            got = rasterize.line_pixels(xy, offsets, zoom, hidden=hidden)
            want = reference.line_pixels(xy, offsets, zoom, hidden)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("mode", ["lines", "points"])
def test_counting_one_activity_at_a_time_equals_counting_all_at_once(mode):
    # The streaming build sums each activity's counts; the sum must be bit for bit
    # what counting every activity's points together gives.
    rng = np.random.default_rng(11)
    activities = [project(np.column_stack([
        14.50 + np.cumsum(rng.normal(0, 0.0004, n)), 46.05 + np.cumsum(rng.normal(0, 0.0003, n))]))
        for n in rng.integers(50, 400, 12)]
    everything = np.vstack(activities)
    offsets = np.cumsum([0] + [len(a) for a in activities])
    grid = tiles.grid_covering(points_bounds(everything), 17)
    together = rasterize.count_tracks(everything, offsets, grid, mode)
    summed = {}
    for xy in activities:
        rasterize.add_counts(summed, rasterize.count_tracks(xy, np.array([0, len(xy)]), grid,
                                                            mode), grid)
    into = {}
    for xy in activities:  # as the build does it: added into one set of tiles
        rasterize.count_tracks(xy, np.array([0, len(xy)]), grid, mode, into=into)
    assert summed.keys() == together.keys() == into.keys() and len(summed) > 4
    for key in together:
        np.testing.assert_array_equal(summed[key], together[key])
        np.testing.assert_array_equal(into[key], together[key])


def test_steps_no_longer_than_min_gap_never_break_whatever_the_times():
    # reading.parse_file drops the times of a track with no step over MIN_GAP_METRES
    # (as summary.ground_steps measures them): that must never change split_gaps.
    from geoheat.summary import ground_steps

    rng = np.random.default_rng(7)
    for lat in (0.0, 46.05, 70.0):
        y = project(np.array([[0.0, lat]]))[0, 1]
        scale = np.cosh(y / tiles.EARTH_RADIUS)  # Mercator metres per ground metre
        # East or west, steps straddling the threshold by a few ulps: only the same
        # arithmetic as split_gaps' tells which are over it.
        length = rasterize.MIN_GAP_METRES * scale * (1 + rng.normal(0, 1e-14, 400))
        dx = np.cumsum(length * rng.choice([-1.0, 1.0], 400))
        xy = np.column_stack([dx, np.full(400, y)])
        offsets = np.array([0, 150, 400])
        steps = ground_steps(xy, offsets)
        paused = np.arange(400) * 1e4  # every step a long pause
        glitch = np.zeros(400)  # every step infinitely fast
        over = np.flatnonzero(steps > rasterize.MIN_GAP_METRES) + 1
        assert 0 < len(over) < 398
        for times in (paused, glitch):
            assert rasterize.split_gaps(xy, offsets, times).tolist() == sorted(
                {0, 150, 400} | set(over.tolist()))
        # And whatever the times, no break at a step of MIN_GAP_METRES or less.
        for times in (rng.uniform(-1e6, 1e6, 400), rng.uniform(0, 400, 400).cumsum(), None):
            assert set(rasterize.split_gaps(xy, offsets, times).tolist()) <= (
                {0, 150, 400} | set(over.tolist()))
