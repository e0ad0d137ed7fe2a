"""Heat to colours: lookup tables, the backdrop made of a map, screen blending."""

import numpy as np

from geoheat import colour, legend
from geoheat.colormaps import STYLE_NAMES, STYLES, lut, with_alpha

HOT = lut("hot")


def test_shade_uses_colormap_and_background():
    values = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    rgb = colour.shade(values, HOT, background=(1, 2, 3))
    assert rgb.shape == (3, 1, 3)
    assert rgb[:, 0, 0].tolist() == [1, 2, 3]
    assert rgb[:, 0, 1].tolist() == [255, 255, 255]  # 'hot' ends white
    assert rgb[:, 0, 2].tolist() == HOT[128].tolist()


def test_shade_rgba_is_transparent_without_heat_and_fades_in():
    values = np.array([[0.0, 0.001, 0.1, 1.0]], dtype=np.float32)
    rgba = colour.shade_rgba(values, with_alpha(HOT))
    assert rgba[3, 0].tolist()[:2] == [0, 0]  # none, and below half a step of the table
    assert 0 < rgba[3, 0, 2] < 255 and rgba[3, 0, 3] == 255
    assert rgba[:3, 0, 3].tolist() == HOT[255].tolist()


def test_over_map_stamps_the_attribution_only_where_there_is_a_map():
    heat = np.zeros((64, 256), dtype=np.float32)
    rgb = np.full((3, 64, 256), 255, dtype=np.uint8)
    with_map = colour.over_map(heat, rgb.copy(), np.ones((64, 256), bool), STYLES["hot"],
                               HOT, with_alpha(HOT), "(c) OSM")
    without = colour.over_map(heat, rgb.copy(), np.zeros((64, 256), bool), STYLES["hot"],
                              HOT, with_alpha(HOT), "(c) OSM")
    assert (with_map[:, -12:, -60:] > 200).any()  # light text bottom-right on the dark map
    assert (without == 0).all()  # the hot style's background, nothing stamped


def test_tone_and_screen_blend():
    rgb = np.full((3, 2, 2), 255, dtype=np.uint8)
    have = np.array([[True, True], [True, False]])
    toned = colour.tone_map(rgb, have, 0.5, (1, 1, 1), (9, 9, 9))
    assert toned[:, 0, 0].tolist() == [0, 0, 0]  # white, inverted: black
    assert toned[:, 1, 1].tolist() == [9, 9, 9]  # no map: background
    base = np.full((3, 1, 1), 100, dtype=np.uint8)
    clear = np.zeros((4, 1, 1), dtype=np.uint8)
    assert colour.blend_screen(base, clear).ravel().tolist() == [100] * 3
    white = np.full((4, 1, 1), 255, dtype=np.uint8)
    assert colour.blend_screen(base, white).ravel().tolist() == [255] * 3


def test_heat_where_the_map_is_missing_looks_as_on_a_plain_background():
    # Faint heat is drawn half transparent over a map; where a tile failed it must
    # show as brightly as without any basemap (31% of faint lines vanished before).
    rng = np.random.default_rng(4)
    heat = (rng.random((600, 300)) * 0.15).astype(np.float32)  # faint: in the fade-in
    rgb = rng.integers(0, 255, (3, 600, 300), dtype=np.uint8)
    have = np.zeros((600, 300), dtype=bool)
    have[:100] = True  # only the first 100 rows have map
    picture = colour.over_map(heat, rgb.copy(), have, STYLES["hot"], HOT, with_alpha(HOT))
    plain = colour.shade(heat, HOT, STYLES["hot"].background)
    np.testing.assert_array_equal(picture[:, 100:], plain[:, 100:])
    # Made in strips, it equals the picture made in one go.
    backdrop = colour.tone_map(rgb, have, 0.6, (1, 1, 1), (0, 0, 0))
    whole = colour.blend_screen(backdrop, colour.shade_rgba(heat, with_alpha(HOT)))
    np.testing.assert_array_equal(picture[:, :100], whole[:, :100])


def test_legend_draws_a_colour_bar_and_labels_bottom_left():
    table = lut("hot")
    picture = np.full((3, 200, 300), 50, dtype=np.uint8)
    legend.draw(picture, table, [(0.5, "1"), (0.8, "2"), (1.0, "16")], "passes")
    changed = (picture != 50).any(axis=0)
    rows, cols = np.nonzero(changed)
    assert rows.min() > 100 and cols.max() < 150  # bottom-left only
    assert rows.max() == 199 and cols.min() == 0
    # The bar runs through the table from its first to its last colour.
    bar_rows = [r for r in range(150, 200) if (picture[:, r, 4:132].T == table[-1]).all(axis=1).any()]
    assert bar_rows
    row = bar_rows[0]
    np.testing.assert_array_equal(picture[:, row, 4], table[0])
    np.testing.assert_array_equal(picture[:, row, 4 + 127], table[-1])
    # The labels are text: light pixels under the bar's right end, where "16" goes.
    assert (picture[:, row + 6:, 110:132] == 240).all(axis=0).sum() > 10


def test_the_key_goes_to_the_corner_with_the_least_heat():
    """A small picture (a town at zoom 12: 256 px) had its key over the busiest loop,
    bottom-left; the key now takes the corner that hides the least heat."""
    from types import SimpleNamespace

    options = SimpleNamespace(mode="lines", normalize="global", scaling="cdf",
                              colormap="hot", style=STYLE_NAMES[0])
    counts = {(0, 0): np.zeros((256, 256), dtype=np.uint32)}
    counts[(0, 0)][200:, :50] = 3  # the busy part: bottom-left
    counts[(0, 0)][10, :] = 1  # a lone line across the top
    heat = counts[(0, 0)].astype(np.float32) / 3
    picture = np.zeros((3, 256, 256), dtype=np.uint8)
    legend.add_legend(picture, counts, options, heat)
    box_w, box_h = legend.key_size("passes", 1, 192)
    rows, cols = np.nonzero(picture.any(axis=0))
    assert rows.min() >= 256 - box_h and cols.min() >= 256 - box_w  # bottom-right
    assert legend.quietest_corner(heat, box_w, box_h) == (True, False)
    assert legend.quietest_corner(np.zeros((256, 256)), box_w, box_h) == legend.BOTTOM_LEFT


def test_legend_leaves_out_labels_that_would_overlap_but_keeps_the_last():
    picture = np.zeros((3, 100, 200), dtype=np.uint8)
    crowded = legend.draw(picture.copy(), lut("hot"),
                            [(0.9, "1"), (0.95, "2"), (1.0, "1,234")], "passes")
    alone = legend.draw(picture.copy(), lut("hot"), [(1.0, "1,234")], "passes")
    np.testing.assert_array_equal(crowded, alone)


def test_the_keys_labels_keep_room_between_them():
    """At the busy end of a rank scale the counts' heats crowd: 6 and 72 two pixels apart
    read "6 72", one number to the eye."""
    for scale in (1, 3):
        # "6" ends 3 px before "72" starts (at scale 1): drawn as "6 72" before.
        ticks = [(0.25, "1"), (102.5 / 192, "6"), (113.5 / 192, "72"), (0.93, "150"),
                 (1.0, "394")]
        kept = sorted(legend.placed_labels(ticks, scale, bar=192))
        assert kept[-1][2] == "394" and kept[0][2] == "1"
        room = legend.LABEL_ROOM * scale
        assert room > 2 * scale
        for (left, width, _), (next_left, _, _) in zip(kept, kept[1:]):
            assert next_left - (left + width) >= room
        assert len(kept) < len(ticks)
    # Ticks with room between them are all drawn.
    spaced = [(0.25, "1"), (0.5, "2"), (0.75, "5"), (1.0, "9")]
    assert len(legend.placed_labels(spaced, 1, bar=192)) == 4


def test_legend_skips_a_picture_too_small_for_it():
    picture = np.zeros((3, 20, 60), dtype=np.uint8)
    assert (legend.draw(picture, lut("hot"), [(1.0, "9")], "passes") == 0).all()


def test_the_picture_is_made_in_strips_from_the_tiles_as_from_one_dense_grid():
    from geoheat import tiles
    from geoheat.tiles import Grid

    rng = np.random.default_rng(8)
    grid = Grid(15, 100 * 256, 200 * 256, 3 * 256, 5 * 256)
    sparse = {(100 + x, 200 + y): (rng.random((256, 256)) * (rng.random((256, 256)) > 0.7)
                                   ).astype(np.float32)
              for x, y in [(0, 0), (2, 1), (1, 3), (2, 4)]}
    view = tiles.RowView(sparse, grid)
    dense = tiles.to_dense(sparse, grid)
    assert view.shape == dense.shape
    for rows in (slice(0, 256), slice(100, 700), slice(1000, 1280), slice(0, 1280)):
        np.testing.assert_array_equal(view[rows], dense[rows])
    np.testing.assert_array_equal(colour.shade_strips(view, HOT, (1, 2, 3)),
                                  colour.shade(dense, HOT, (1, 2, 3)))
    rgb = rng.integers(0, 255, (3, 1280, 768), dtype=np.uint8)
    have = rng.random((1280, 768)) > 0.3
    np.testing.assert_array_equal(
        colour.over_map(view, rgb.copy(), have, STYLES["hot"], HOT, with_alpha(HOT)),
        colour.over_map(dense, rgb.copy(), have, STYLES["hot"], HOT, with_alpha(HOT)))


def test_the_key_keeps_its_middle_ticks():
    # Counts at the heats a real set draws them with (chengdu-runs, zoom 16): the old
    # rule dropped the one before the last ("1 394"); now every label that fits between
    # the others stays.
    ticks = [(0.36, "1"), (0.51, "2"), (0.59, "4"), (0.68, "9"), (0.76, "20"), (0.84, "39"),
             (0.99998, "180")]
    picture = np.zeros((3, 100, 300), dtype=np.uint8)
    full = legend.draw(picture.copy(), lut("hot"), ticks, "passes", bar=192)
    for dropped in range(1, len(ticks) - 1):  # each middle label is drawn
        fewer = legend.draw(picture.copy(), lut("hot"), ticks[:dropped] + ticks[dropped + 1:],
                            "passes", bar=192)
        assert (fewer != full).any(), ticks[dropped]


def test_the_key_grows_with_the_picture():
    # Fitted to a ~1000 px screen, the letters keep the font's own 7 px.
    assert [legend.legend_scale(w) for w in (600, 1000, 1600, 4096)] == [1, 1, 2, 4]
    picture = np.zeros((3, 600, 4096), dtype=np.uint8)
    legend.draw(picture, lut("hot"), [(0.4, "1"), (1.0, "394")], "passes",
                legend.legend_scale(4096), bar=192)
    rows = np.nonzero((picture == 240).all(axis=0).any(axis=1))[0]  # the letters' rows
    assert rows.max() - rows.min() + 1 >= 2 * 7 * 4  # the title and the labels, 28 px each
