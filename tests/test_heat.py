"""Counts to heat: CDF and linear scaling and the blur, over sparse tiles, against the
dense references in tests/reference.py."""

import threading

import numpy as np
import pytest

from geoheat import heat, tiles
from geoheat.errors import ParameterError
from geoheat.tiles import Grid

from . import reference

ONE_TILE = Grid(16, 35000 * 256, 23000 * 256, 256, 256)


def one_tile(array):
    block = np.zeros((256, 256), dtype=array.dtype)
    block[:array.shape[0], :array.shape[1]] = array
    return {(35000, 23000): block}


def test_cdf_scale_known_values():
    counts = np.array([[0, 1, 1, 2], [0, 10, 0, 1]], dtype=np.uint32)
    # Non-zero counts: 1, 1, 1, 2, 10 -> mid-ranks 0.3 (0 below, 3/5 at), 0.7, 0.9,
    # drawn from LOW (0.25) to 1: 0.25 + 0.75 x mid-rank.
    scaled = heat.cdf_scale_tiles(one_tile(counts))[(35000, 23000)][:2, :4]
    np.testing.assert_allclose(scaled, [[0, 0.475, 0.475, 0.775], [0, 0.925, 0, 0.475]],
                               rtol=1e-6)


def test_one_count_everywhere_is_the_middle_colour_not_the_top():
    counts = np.zeros((8, 8), dtype=np.uint32)
    counts[2, :] = 1  # one track: it says "once", not "the busiest"
    scaled = heat.cdf_scale_tiles(one_tile(counts))[(35000, 23000)]
    assert scaled[2, 0] == pytest.approx(heat.LOW + (1 - heat.LOW) / 2)


def test_cdf_is_over_all_tiles_together():
    a = np.zeros((256, 256), dtype=np.uint32)
    b = a.copy()
    a[0, 0], b[0, 0], b[0, 1] = 1, 2, 3
    scaled = heat.cdf_scale_tiles({(0, 0): a, (1, 0): b})
    assert [scaled[(0, 0)][0, 0], scaled[(1, 0)][0, 0], scaled[(1, 0)][0, 1]] == pytest.approx(
        [0.25 + 0.75 / 6, 0.25 + 0.75 / 2, 0.25 + 0.75 * 5 / 6])


def test_cdf_scale_is_monotonic_and_in_unit_interval():
    rng = np.random.default_rng(1)
    counts = rng.zipf(1.8, size=(256, 256)).astype(np.uint32)
    counts[rng.random((256, 256)) < 0.6] = 0
    scaled = heat.cdf_scale_tiles(one_tile(counts))[(35000, 23000)]
    nonzero = counts > 0
    assert (scaled[~nonzero] == 0).all()
    assert scaled[nonzero].min() >= heat.LOW and scaled.max() == pytest.approx(1.0, abs=1e-4)
    order = np.argsort(counts[nonzero], kind="stable")
    assert (np.diff(scaled[nonzero][order]) >= 0).all()


def test_cdf_keeps_a_hot_pixel_from_washing_out_the_rest():
    counts = np.ones((10, 10), dtype=np.uint32)
    counts[0, 0] = 10_000
    linear = heat.linear_scale_tiles(one_tile(counts))[(35000, 23000)]
    cdf = heat.cdf_scale_tiles(one_tile(counts))[(35000, 23000)]
    assert linear[5, 5] == pytest.approx(1e-4)
    assert cdf[5, 5] == pytest.approx(0.25 + 0.75 * 0.495)


def test_blur_softens_around_the_heat_and_keeps_its_scale():
    scaled = np.zeros((21, 21), dtype=np.float32)
    scaled[10, 10] = 0.5
    blurred = tiles.to_dense(heat.blur_tiles(one_tile(scaled), 2.0, ONE_TILE), ONE_TILE)
    assert blurred[10, 10] == 0.5 and blurred.max() == 0.5  # no rescale to 1
    assert 0 < blurred[10, 13] < blurred[10, 11] < 0.5
    unblurred = heat.blur_tiles(one_tile(scaled), 0, ONE_TILE)[(35000, 23000)]
    assert unblurred[10, 10] == 0.5 and unblurred.sum() == 0.5
    for sigma in (-1, 51, float("nan")):
        with pytest.raises(ParameterError, match="sigma"):
            heat.blur_tiles(one_tile(scaled), sigma, ONE_TILE)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_scipy_blur_matches_the_written_out_gaussian(sigma):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    image = (rng.random((40, 57)) > 0.9).astype(np.float32) * rng.random((40, 57)).astype(
        np.float32)
    np.testing.assert_allclose(gaussian_filter(image, sigma, mode="constant", truncate=4.0),
                               reference.gaussian_filter(image, sigma), atol=1e-6)


@pytest.mark.parametrize("sigma", [0, 1, 3.5])
def test_sparse_equals_dense(sigma):
    xy, grid, counts = reference.scattered_counts()
    dense = reference.count_points(xy, grid)
    sparse = heat.blur_tiles(heat.cdf_scale_tiles(counts), sigma, grid)
    np.testing.assert_array_equal(tiles.to_dense(sparse, grid),
                                  reference.blur(reference.cdf_scale(dense), sigma))
    linear = heat.blur_tiles(heat.linear_scale_tiles(counts), sigma, grid)
    np.testing.assert_array_equal(tiles.to_dense(linear, grid),
                                  reference.blur(reference.linear_scale(dense), sigma))


def test_blur_has_no_seam_at_tile_borders():
    grid = Grid(16, 35000 * 256, 23000 * 256, 512, 256)
    line = np.zeros((256, 512), dtype=np.float32)
    line[128, :] = 1  # a road across the border between the two tiles
    blurred = tiles.to_dense(heat.blur_tiles(reference.from_dense(line, grid), 2.0, grid), grid)
    profile = blurred[120:137, 250:262]  # across the border at column 256
    assert np.allclose(profile, profile[:, :1], atol=1e-6)  # the same all along the road
    assert blurred[124, 255] > 0 and blurred[124, 256] > 0


def test_a_bundle_of_lines_keeps_its_heat_instead_of_summing_to_the_top():
    # Five parallel 1-pixel tracks side by side (a street run by a few people): the old
    # blur divided by a lone line's peak, so the bundle hit 1; now every line keeps its
    # heat and the fringe never exceeds the lines beside it.
    scaled = np.zeros((40, 40), dtype=np.float32)
    scaled[10:15, :] = 0.4
    blurred = tiles.to_dense(heat.blur_tiles(one_tile(scaled), 1.0, ONE_TILE), ONE_TILE)
    np.testing.assert_array_equal(blurred[10:15, :40], np.float32(0.4))
    assert 0 < blurred[16, 20] < blurred[15, 20] <= np.float32(0.4)
    # Beside a lone line the fringe is the line blurred as a line: at 1 pixel, the
    # Gaussian's weight there over its centre weight.
    lone = np.zeros((40, 40), dtype=np.float32)
    lone[20, :] = 0.6
    blurred = tiles.to_dense(heat.blur_tiles(one_tile(lone), 1.0, ONE_TILE), ONE_TILE)
    assert blurred[21, 20] == pytest.approx(0.6 * np.exp(-0.5), rel=1e-4)


def test_legend_ticks_give_each_count_the_heat_of_its_colour():
    counts = {(0, 0): np.zeros((256, 256), dtype=np.uint32)}
    counts[(0, 0)][0, :60] = 1  # 60 pixels ridden once, 30 twice, 9 five times, 1 forty times
    counts[(0, 0)][1, :30] = 2
    counts[(0, 0)][2, :9] = 5
    counts[(0, 0)][3, 0] = 40
    ticks = heat.legend_ticks(counts, "cdf")
    # Mid-ranks 0.3, 0.75, 0.945, 0.995; from 0.25 to 1.
    assert [n for _, n in ticks] == [1, 2, 5, 40]
    assert [h for h, _ in ticks] == pytest.approx([0.475, 0.8125, 0.95875, 0.99625])
    scaled = heat.cdf_scale_tiles(counts)[(0, 0)]
    for h, n in ticks:  # the heat a tick sits at is the heat of that count
        assert scaled[counts[(0, 0)] == n][0] == pytest.approx(h)
    assert heat.passes_at(counts, "cdf", [0.1, 0.475, 0.48, 0.95, 1.0]) == [1, 1, 2, 5, 40]
    linear = heat.legend_ticks(counts, "linear", items=5)
    assert [n for _, n in linear] == [1, 5, 40]
    assert [h for h, _ in linear] == pytest.approx([1 / 40, 0.125, 1.0])
    assert heat.passes_at(counts, "linear", [0.05, 1.0]) == [2, 40]
    assert heat.legend_ticks({}, "cdf") == [] and heat.passes_at({}, "cdf", [0.5]) == [1]


@pytest.mark.parametrize("sigma", [0, 1, 2.5])
def test_cells_and_blocks_blur_alike_bit_for_bit(sigma):
    """The build keeps its heat as cells (tiles.CellTiles), serve as blocks: the same
    heat either way, and the same as blurring the whole grid (test_sparse_equals_dense)."""
    _, grid, counts = reference.scattered_counts(seed=8)
    scaled = heat.cdf_scale_tiles(counts)
    packed = heat.cdf_scale_tiles(tiles.CellTiles(np.uint32, counts))
    assert isinstance(packed, tiles.CellTiles)
    from_blocks = heat.blur_tiles(scaled, sigma, grid)
    from_cells = heat.blur_tiles(packed, sigma, grid)
    assert set(from_blocks) == set(from_cells)
    for key in from_blocks:
        np.testing.assert_array_equal(from_cells[key], from_blocks[key])
    some = set(list(from_blocks)[:3])
    only = heat.blur_tiles(packed, sigma, grid, only=some)
    assert set(only) <= some and all(np.array_equal(only[k], from_blocks[k]) for k in only)


def test_the_blur_skips_the_cells_no_heat_reaches():
    """A lone point in a tile's corner: only the cells within the blur's reach of it are
    filtered and kept (the rest of the tile and its neighbours stay empty, as filtering
    them would leave them)."""
    grid = Grid(16, 35000 * 256, 23000 * 256, 768, 768)
    block = np.zeros((256, 256), dtype=np.float32)
    block[2, 2] = 1.0  # the top-left corner of the middle tile
    blurred = heat.blur_tiles({(35001, 23001): block}, 2.0, grid)
    assert set(blurred) == {(35000, 23000), (35001, 23000), (35000, 23001), (35001, 23001)}
    mask, _ = blurred.cells((35001, 23001))
    assert mask.sum() == 1 and mask[0, 0]
    dense = tiles.to_dense(blurred, grid)
    np.testing.assert_array_equal(dense, reference.blur(tiles.to_dense({(35001, 23001): block},
                                                                        grid), 2.0))


def border_heat(seed: int = 11) -> tuple[Grid, dict]:
    """Heat on a 5 x 4 tile grid along the tiles' and cells' borders (the last pixel
    before one and the first after), across them, in corners, and scattered: every
    cell's halo reaches into its neighbours'."""
    grid = Grid(16, 35000 * 256, 23000 * 256, 5 * 256, 4 * 256)
    rng = np.random.default_rng(seed)
    dense = np.zeros((grid.height, grid.width), dtype=np.float32)
    for edge in range(64, grid.height, 64):  # rows and columns at cell (and tile) borders
        dense[edge - 1, rng.integers(0, 200):] = rng.uniform(0.25, 1)
        dense[edge, :rng.integers(300, grid.width)] = rng.uniform(0.25, 1)
    for edge in range(64, grid.width, 64):
        dense[rng.integers(0, 400):, edge - 1] = rng.uniform(0.25, 1)
    dense[255:257, 255:257] = 1.0  # a tile corner's four pixels
    dense[0, 0] = dense[-1, -1] = 0.5  # the grid's corners
    spots = rng.random(dense.shape) < 0.002
    dense[spots] = rng.uniform(0.25, 1, spots.sum()).astype(np.float32)
    return grid, reference.from_dense(dense, grid)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_threads_blur_bit_for_bit_as_one_thread_and_the_whole_grid(sigma, workers, monkeypatch):
    """The batches filtered on threads (workers) make the same heat, bit for bit, as one
    thread and as filtering the whole grid at once: with the batches as the build has
    them, and with small ones (many in flight at once, buffers reused)."""
    grid, scaled = border_heat()
    whole = reference.blur(tiles.to_dense(scaled, grid), sigma)
    packed = tiles.CellTiles(np.float32, scaled)
    alone = heat.blur_tiles(packed, sigma, grid, workers=1)
    for batch in (heat.CELL_BATCH, 7):
        monkeypatch.setattr(heat, "CELL_BATCH", batch)
        for source in (scaled, packed):
            blurred = heat.blur_tiles(source, sigma, grid, workers=workers)
            np.testing.assert_array_equal(tiles.to_dense(blurred, grid), whole)
            assert set(blurred) == set(alone)
            for key, mask, cells in alone.parts():
                got_mask, got_cells = blurred.cells(key)
                np.testing.assert_array_equal(got_mask, mask)
                assert got_cells.tobytes() == cells.tobytes()
    assert not [t for t in threading.enumerate() if t.name.startswith("geoheat-blur")]


def test_threads_blur_the_tiles_asked_for_alike(monkeypatch):
    """only= (a served metatile's tiles) on threads: those tiles, as the whole level has them."""
    monkeypatch.setattr(heat, "CELL_BATCH", 5)
    grid, scaled = border_heat(seed=12)
    level = heat.blur_tiles(scaled, 1.5, grid, workers=1)
    some = {(35001, 23001), (35002, 23001), (35001, 23002), (35004, 23003)}
    only = heat.blur_tiles(scaled, 1.5, grid, only=some, workers=2)
    assert set(only) == some & set(level)
    for key in only:
        np.testing.assert_array_equal(only[key], level[key])


def test_a_failing_filter_lets_its_threads_go(monkeypatch):
    """An error in a batch (here: memory) reaches the caller, and no blur thread is left."""
    monkeypatch.setattr(heat, "CELL_BATCH", 4)
    grid, scaled = border_heat()
    calls = []

    def failing(self, batch, places):
        calls.append(len(places))
        if len(calls) == 3:
            raise MemoryError("no room for the batch")
        return [], [], []  # no cell left with heat

    monkeypatch.setattr(heat._CellBlur, "_filter", failing)
    with pytest.raises(MemoryError):
        heat.blur_tiles(scaled, 1.0, grid, workers=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("geoheat-blur")]


def test_a_wide_blur_goes_in_smaller_batches_alike():
    """A wide blur's cells (each with a wide halo) go fewer at a time (BATCH_BYTES), on
    threads: the same heat as the whole grid's, bit for bit."""
    grid, scaled = border_heat(seed=13)
    side = heat.CELL + 2 * heat.kernel_radius(16.0)
    assert heat.BATCH_BYTES // (2 * side * side * 4) < 64 < len(scaled) * 16
    blurred = heat.blur_tiles(scaled, 16.0, grid, workers=2)
    np.testing.assert_array_equal(tiles.to_dense(blurred, grid),
                                  reference.blur(tiles.to_dense(scaled, grid), 16.0))


def test_a_blur_that_fits_one_batch_starts_no_thread(monkeypatch):
    """A served metatile (4 tiles, every cell lit: 64 cells) is filtered in one batch on
    the caller's thread, whatever the workers: no pool made for one batch."""
    grid = Grid(16, 35000 * 256, 23000 * 256, 512, 512)
    block = np.full((256, 256), 0.5, np.float32)
    block[::7] = 0  # some fringe to make
    scaled = {(35000 + dx, 23000 + dy): block for dx in (0, 1) for dy in (0, 1)}
    alone = heat.blur_tiles(scaled, 1.0, grid, workers=1)

    def no_thread(self):
        raise AssertionError("a batch sent to the pool")

    monkeypatch.setattr(heat._CellBlur, "_send", no_thread)
    blurred = heat.blur_tiles(scaled, 1.0, grid, workers=2)
    assert sum(int(mask.sum()) for _, mask, _ in blurred.parts()) == 64
    np.testing.assert_array_equal(tiles.to_dense(blurred, grid), tiles.to_dense(alone, grid))
