"""viewselection: a page's view draws what a build with those filters draws."""

import numpy as np

from geoheat.options import BuildOptions

from .serving import SAMPLES, ZOOM, renderer_for
from .serving import samples_renderer  # noqa: F401 - a fixture


def test_a_view_is_the_build_with_those_filters(samples_renderer):
    view = samples_renderer.view(types=["Run"], years=[2024, 2025], scaling="linear")
    filtered = renderer_for(BuildOptions(inputs=[SAMPLES], types=["Run"], years=[2024, 2025],
                                         scaling="linear"))
    keys = filtered.lit_tiles(ZOOM)
    assert keys and keys != samples_renderer.lit_tiles(ZOOM)
    for x, y in keys:
        np.testing.assert_array_equal(samples_renderer.rgba_tile(ZOOM, x, y, view, "magma"),
                                      filtered.rgba_tile(ZOOM, x, y, cmap="magma"))
