"""geoheat.level: a region counted from the steps that reach it is the whole count there;
a level's Scale from its whole distribution is the build's scaling bit for bit."""

import numpy as np
import pytest

from geoheat import heat, tiles
from geoheat.level import apply_scale, count_region, make_scale, sampled, sample_of
from geoheat.rasterize import count_tracks, split_gaps


def random_tracks(seed: int, zoom: int):
    """Tracks over ~12 x 12 tiles at zoom: short steps, some long jumps across tiles,
    several segments, points on tile edges; and the grid covering them."""
    rng = np.random.default_rng(seed)
    res = tiles.resolution(zoom)
    origin = np.array([1_000_000.0, 6_000_000.0])
    parts, offsets = [], [0]
    for _ in range(12):
        n = int(rng.integers(2, 400))
        steps = rng.normal(0, 6 * res, (n, 2))
        jumps = rng.random(n) < 0.02
        steps[jumps] *= 120  # a step across several tiles
        xy = origin + rng.uniform(0, 12 * 256 * res, 2) + np.cumsum(steps, axis=0)
        parts.append(xy)
        offsets.append(offsets[-1] + n)
    xy = np.concatenate(parts)
    # A few points exactly on tile edges.
    edge = rng.choice(len(xy), 10, replace=False)
    xy[edge, 0] = np.round((xy[edge, 0] + tiles.ORIGIN_SHIFT) / (256 * res)) * 256 * res \
        - tiles.ORIGIN_SHIFT
    grid = tiles.grid_covering(tiles.Bbox(*xy.min(axis=0), *xy.max(axis=0)), zoom)
    return xy, split_gaps(xy, np.array(offsets)), grid


@pytest.mark.parametrize("mode", ["lines", "points"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_region_counted_alone_is_the_whole_count_there(mode, seed):
    zoom = 16
    xy, segments, grid = random_tracks(seed, zoom)
    whole = count_tracks(xy, segments, grid, mode, gaps_split=True)
    assert len(whole) > 20
    x0, y0 = grid.col_off // 256, grid.row_off // 256
    for m in (1, 2, 5):  # a sample of tiles, as a level's Scale counts it
        part = count_region(xy, segments, mode, grid, lambda tx, ty: sampled(tx, ty, m))
        assert set(part) == set(sample_of(whole, m))
        for key, block in part.items():
            np.testing.assert_array_equal(block, whole[key], err_msg=f"{key} 1 in {m}")
    for dx, dy in ((2, 3), (5, 1), (0, 0)):  # a block of tiles, as a served tile counts it
        def inside(tx, ty):
            return (tx >= x0 + dx) & (tx < x0 + dx + 3) & (ty >= y0 + dy) & (ty < y0 + dy + 3)

        part = count_region(xy, segments, mode, grid, inside)
        want = {k: b for k, b in whole.items()
                if inside(np.array([k[0]]), np.array([k[1]]))[0]}
        assert set(part) == set(want)
        for key, block in part.items():
            np.testing.assert_array_equal(block, want[key])


@pytest.mark.parametrize("scaling", ["cdf", "linear"])
def test_a_scale_of_the_whole_level_is_the_builds_scaling(scaling):
    xy, segments, grid = random_tracks(4, 15)
    counts = count_tracks(xy, segments, grid, "lines", gaps_split=True)
    scale = make_scale(counts, scaling)
    expected = heat.SCALERS[scaling](counts, grid)
    got = apply_scale(counts, scale)
    for key in counts:
        np.testing.assert_array_equal(got[key], expected[key])
    assert list(scale.ticks) == heat.legend_ticks(counts, scaling)


def test_a_sampled_scale_ranks_counts_it_never_saw_between_its_own():
    counts = {(0, 0): np.array([[0, 1, 2], [4, 8, 9]], dtype=np.uint32)}
    scale = make_scale({(0, 0): np.array([[1, 4, 8]], dtype=np.uint32)}, "cdf")
    out = apply_scale(counts, scale)[(0, 0)]
    assert out[0, 0] == 0
    assert heat.LOW < out[0, 1] < out[0, 2] < out[1, 0] < out[1, 1] <= out[1, 2] <= 1
    assert out[1, 2] == 1.0  # above every sampled count: the top


def test_the_sample_is_fixed_and_about_one_in_m():
    tx, ty = np.meshgrid(np.arange(1000, 1200), np.arange(500, 700))
    first = sampled(tx, ty, 8)
    assert np.array_equal(first, sampled(tx, ty, 8))
    assert 0.1 < first.mean() < 0.15 and sampled(tx, ty, 1).all()


def test_what_else_the_input_holds_does_not_change_the_drawn_heat(tmp_path, monkeypatch):
    """A level's sample size came from every activity kept, drawn or not: the same runs
    got other colours when a far-away city sat in the same folder (chengdu-runs alone
    and within ../shared/data: up to 0.105 apart). Now only what reaches the area counts."""
    import rasterio

    import geoheat
    import geoheat.level
    from geoheat.samples import gpx_document

    # The town alone is ranked whole (~800 tiles its length may light at zoom 17); its
    # level with the far rides' length would be ranked on a 1-in-6 sample.
    monkeypatch.setattr(geoheat.level, "SAMPLE_TILES", 1000)
    home = tmp_path / "home"
    home.mkdir()
    rng = np.random.default_rng(2)
    for i in range(12):  # a town's runs, enough to be the main area
        lon = 14.50 + np.cumsum(rng.normal(0, 0.0004, 400)) + 0.002 * (i % 4)
        lat = 46.05 + np.cumsum(rng.normal(0, 0.0003, 400)) + 0.002 * (i // 4)
        (home / f"run{i}.gpx").write_text(gpx_document([np.column_stack([lon, lat])],
                                                      activity_type="Run"))
    away = tmp_path / "with-away"
    away.mkdir()
    for path in home.iterdir():
        (away / path.name).write_text(path.read_text())
    for i in range(10):  # long rides far off (another country): left out of the extent
        lon = 2.35 + np.linspace(0, 1.2, 2000) + 0.01 * i
        lat = 48.85 + np.linspace(0, 0.5, 2000)
        (away / f"away{i}.gpx").write_text(gpx_document([np.column_stack([lon, lat])],
                                                       activity_type="Ride"))
    heats = []
    for folder in (home, away):
        out = tmp_path / f"{folder.name}-out" / "h.tif"
        out.parent.mkdir()
        result = geoheat.build([folder], out, zoom=17, png=False)
        assert result.activities == 12
        with rasterio.open(out) as data:
            heats.append(data.read(1))
    assert geoheat.level.modulus(geoheat.level.plan_of([], geoheat.tiles.Bbox(0, 0, 1, 1)),
                                 17) == 1  # nothing reaches: nothing sampled
    np.testing.assert_array_equal(heats[0], heats[1])
