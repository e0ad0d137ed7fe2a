"""Local contrast (--normalize local): ranks within neighbourhoods, blended without seams."""

import numpy as np
import pytest

from geoheat import contrast, tiles
from geoheat.heat import LOW, cdf_scale_tiles

from . import reference


def edge_jumps(heat: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """The largest change of heat between adjacent pixels (across or down) holding the same
    count: across tile edges, and inside tiles."""
    across, inside = 0.0, 0.0
    for axis in (0, 1):
        a, c = np.moveaxis(heat, axis, 0), np.moveaxis(counts, axis, 0)
        same = (c[1:] == c[:-1]) & (c[1:] > 0)
        jump = np.abs(a[1:].astype(np.float64) - a[:-1]) * same
        edge = (np.arange(1, a.shape[0]) % tiles.TILE_SIZE) == 0
        across = max(across, float(jump[edge].max(initial=0)))
        inside = max(inside, float(jump[~edge].max(initial=0)))
    return across, inside


def city(rng):
    """A 12 x 6 tile grid: a busy centre (many streets, many passes) on the left, quiet
    streets ridden once or twice on the right, and full-length lines crossing tile edges."""
    grid = tiles.Grid(14, 256 * 8000, 256 * 5000, 256 * 12, 256 * 6)
    dense = np.zeros((grid.height, grid.width), dtype=np.uint32)
    for row in range(20, grid.height, 24):  # streets across the whole map
        dense[row, :] = rng.integers(1, 3)
    for col in range(30, grid.width, 40):
        dense[:, col] = rng.integers(1, 3)
    busy = (slice(0, grid.height), slice(0, 256 * 4))
    dense[busy] = np.where(dense[busy] > 0, dense[busy] * rng.integers(5, 40, size=dense[busy].shape),
                           0)
    for row in range(8, grid.height, 16):  # more, busier streets in the centre
        dense[row, :256 * 4] = rng.integers(10, 60, size=256 * 4)
    return grid, dense


def test_tile_edges_do_not_show():
    grid, dense = city(np.random.default_rng(1))
    heat = tiles.to_dense(contrast.local_scale_tiles(reference.from_dense(dense, grid), grid),
                          grid)
    across, inside = edge_jumps(heat, dense)
    assert inside > 0
    assert across <= inside + 1e-6, (across, inside)
    # Along one street of constant count the heat changes smoothly: at most the range
    # (1 - LOW) over a block's width per pixel, wherever it crosses a tile or block edge.
    side = contrast.block_pixels(grid)
    street = np.flatnonzero(dense[20] > 0)
    steps = np.abs(np.diff(heat[20, street]))[np.diff(dense[20, street]) == 0]
    assert steps.max() <= (1 - LOW) / side + 1e-6


def test_a_quiet_regions_lines_are_brighter_than_under_global():
    grid, dense = city(np.random.default_rng(2))
    sparse = reference.from_dense(dense, grid)
    local = tiles.to_dense(contrast.local_scale_tiles(sparse, grid), grid)
    glob = tiles.to_dense(cdf_scale_tiles(sparse), grid)
    quiet = (slice(None), slice(256 * 8, None))  # more than the neighbourhood from the centre
    lit = dense[quiet] > 0
    # Ranked higher: the mid-rank (heat from LOW) nearly doubles; the heat is 1 pass's
    # among quiet streets run once or twice.
    rank_local, rank_global = (np.median(h[quiet][lit]) - LOW for h in (local, glob))
    assert rank_local > 1.8 * rank_global
    assert np.median(local[quiet][lit]) >= 0.45
    # Inside one neighbourhood the order of counts is kept: more passes, more heat.
    tile = (slice(256, 512), slice(256 * 9, 256 * 10))
    c, h = dense[tile].ravel(), local[tile].ravel()
    means = [h[c == v].mean() for v in np.unique(c[c > 0])]
    assert len(means) >= 2 and means == sorted(means)


def test_local_heat_is_in_range_zero_stays_zero_and_one_track_is_full():
    grid = tiles.Grid(10, 256 * 300, 256 * 400, 512, 512)
    dense = np.zeros((512, 512), dtype=np.uint32)
    dense[100, 50:400] = 1  # one track, ridden once
    heat = tiles.to_dense(contrast.local_scale_tiles(reference.from_dense(dense, grid), grid),
                          grid)
    assert heat[dense == 0].max() == 0
    # One count alone in its neighbourhood: the middle colour, as under the global scale.
    assert heat[dense > 0] == pytest.approx(LOW + (1 - LOW) / 2)
    assert contrast.local_scale_tiles({}, grid) == {}


@pytest.mark.parametrize("gap_km, dim", [(0.4, True), (6.0, False)])
def test_the_neighbourhood_is_the_same_ground_at_every_zoom(gap_km, dim):
    # A street run 20 times and a quiet one run once, gap_km apart (east-west): the quiet
    # one is ranked among the busy one's pixels (dim) when it is within the ~2 km
    # neighbourhood, alone (the middle colour) when far, at zoom 13 as at zoom 16.
    from geoheat import rasterize
    from geoheat.extent import points_bounds
    from geoheat.projection import project

    lon = np.linspace(14.50, 14.52, 200)  # 1.5 km
    dlon = gap_km / (111.32 * np.cos(np.radians(46.05)))
    busy = project(np.column_stack([lon, np.full(200, 46.05)]))
    quiet = project(np.column_stack([lon / 10 + 14.52 * 0.9 + dlon, np.full(200, 46.05)]))
    xy = np.concatenate([busy] * 20 + [quiet])
    offsets = np.arange(0, 21 * 200 + 1, 200)
    medians = {}
    for zoom in (13, 16):
        grid = tiles.grid_covering(points_bounds(xy), zoom)
        counts = rasterize.count_tracks(xy, offsets, grid, "lines", 2**30)
        heat = contrast.local_scale_tiles(counts, grid)
        dense, h = tiles.to_dense(counts, grid), tiles.to_dense(heat, grid)
        medians[zoom] = float(np.median(h[dense == 1]))
        side_m = contrast.block_pixels(grid) * tiles.resolution(zoom) / np.cosh(
            busy[0, 1] / tiles.EARTH_RADIUS)
        assert side_m == pytest.approx(contrast.NEIGHBOURHOOD_M / 3, rel=0.1)
    for median in medians.values():
        if dim:
            assert median < 0.5
        else:
            assert median == pytest.approx(LOW + (1 - LOW) / 2, abs=0.02)
    assert medians[13] == pytest.approx(medians[16], abs=0.1)


def test_build_with_local_contrast(tmp_path, write_gpx):
    import geoheat
    import rasterio

    quiet = [(14.70 + 0.0004 * i, 46.05) for i in range(60)]
    for i in range(15):  # 15 rides of one street: each its own (its points a hair apart)
        write_gpx(f"busy{i}.gpx", [(14.50 + 0.0004 * j, 46.05 + 1e-7 * i) for j in range(60)])
    write_gpx("quiet.gpx", quiet)
    heats = {}
    for mode in ("global", "local"):
        geoheat.build([tmp_path], tmp_path / f"{mode}.tif", zoom=14, sigma=0, normalize=mode,
                      extent="all")
        with rasterio.open(tmp_path / f"{mode}.tif") as src:
            heats[mode] = src.read(1)
            assert src.tags()["NORMALIZE"] == mode
    # The quiet ride (the east half): dim under global, full under local.
    east = np.zeros(heats["local"].shape, dtype=bool)
    east[:, east.shape[1] // 2:] = True
    quiet_global = heats["global"][east & (heats["global"] > 0)]
    quiet_local = heats["local"][east & (heats["local"] > 0)]
    assert quiet_global.max() < 0.5 and quiet_local.min() == pytest.approx(LOW + (1 - LOW) / 2)
