"""render.Renderer: heat tiles rendered on request are the build's (its MBTiles tiles,
at every zoom and pyramid level, on real runs too), empty far from the tracks, and
PNG-encoded by the build's encoder."""

import numpy as np
import pytest

import geoheat
from geoheat.options import BuildOptions
from geoheat.render import EMPTY_PNG, encode_png

from .serving import SAMPLES, ZOOM, decode, mbtiles_tiles, renderer_for
from .serving import samples_renderer  # noqa: F401 - a fixture


@pytest.mark.parametrize("settings", [
    {},
    {"sigma": 2.5, "scaling": "linear", "cmap": "viridis"},
    {"mode": "points", "sigma": 0, "types": ["Run"]},
    {"years": [2024], "extent": "all", "style": "strava"},
])
def test_rendered_tiles_are_the_builds_mbtiles_tiles(tmp_path, settings):
    options = BuildOptions(inputs=[SAMPLES], output=tmp_path / "h.png", zoom=ZOOM,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=ZOOM, max_zoom=ZOOM,
                           **settings)
    geoheat.build(options)
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    renderer = renderer_for(options)
    assert {(ZOOM, x, y) for x, y in renderer.lit_tiles(ZOOM)} == set(built)
    for (z, x, y), pixels in built.items():
        rendered = renderer.rgba_tile(z, x, y)
        np.testing.assert_array_equal(rendered, pixels, err_msg=f"tile {z}/{x}/{y}")
        np.testing.assert_array_equal(decode(renderer.png_tile(z, x, y)), pixels)


def test_every_pyramid_level_of_the_mbtiles_is_served_the_same(tmp_path):
    # The build's levels below its zoom and above it (to street zoom, 16) come from their
    # own counts (issues 12, 20); the renderer makes any zoom the same way: every stored
    # tile, every level, is served.
    options = BuildOptions(inputs=[SAMPLES], output=tmp_path / "h.png", zoom=ZOOM,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=ZOOM - 5)
    geoheat.build(options)
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    assert {z for z, _, _ in built} == set(range(ZOOM - 5, 17))
    renderer = renderer_for(options)
    for (z, x, y), pixels in built.items():
        np.testing.assert_array_equal(renderer.rgba_tile(z, x, y), pixels,
                                      err_msg=f"tile {z}/{x}/{y}")


def test_real_runs_tiles_are_the_builds(tmp_path):
    """The 184 chengdu runs (times, pauses, GPS jumps): every served tile at zoom 15 and
    at zoom 17 is the build's tile."""
    from .conftest import shared_folder

    folder = shared_folder("chengdu-runs")
    cache = tmp_path / "cache"
    for zoom in (15, 17):
        options = BuildOptions(inputs=[folder], output=tmp_path / "h.png", zoom=zoom,
                               mbtiles=tmp_path / "h.mbtiles", min_zoom=zoom, max_zoom=zoom,
                               parse_cache=cache, jobs=2, sigma=1.5)
        geoheat.build(options)
        built = mbtiles_tiles(tmp_path / "h.mbtiles")
        renderer = renderer_for(options)  # from the parse cache the build filled
        assert len(built) > 10 and len(renderer.lit_tiles(zoom)) == len(built)
        for (z, x, y), pixels in built.items():
            np.testing.assert_array_equal(renderer.rgba_tile(z, x, y), pixels)


@pytest.mark.parametrize("zoom", [11, 12, 15])
def test_every_zoom_is_that_zooms_build(tmp_path, samples_renderer, zoom):
    """A level is a build at its zoom: the ranks over that level."""
    options = BuildOptions(inputs=[SAMPLES], output=tmp_path / "h.png", zoom=zoom,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=zoom, max_zoom=zoom)
    geoheat.build(options)
    built = mbtiles_tiles(tmp_path / "h.mbtiles")
    assert len(built) == len(samples_renderer.lit_tiles(zoom))
    for (z, x, y), pixels in built.items():
        np.testing.assert_array_equal(samples_renderer.rgba_tile(z, x, y), pixels)


def test_tiles_far_from_the_tracks_are_empty_without_making_a_level():
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]))
    assert renderer.rgba_tile(15, 0, 0) is None
    assert renderer.png_tile(15, 0, 0) == EMPTY_PNG
    assert renderer.levels.items == {}  # no level was made for it
    assert renderer.rgba_tile(20, 0, 0) is None and renderer.rgba_tile(3, 8, 0) is None


def test_png_encoder_round_trips():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (4, 256, 256), dtype=np.uint8)
    np.testing.assert_array_equal(decode(encode_png(rgba)), rgba)
    assert decode(EMPTY_PNG).max() == 0
