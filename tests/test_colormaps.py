"""Colormaps: the published tables exactly, and the alpha ramp of the overlays."""

import numpy as np
import pytest

from geoheat import colormaps
from geoheat.colormaps import COLORMAP_NAMES, STYLES, lut, with_alpha

# First, middle and last entries of the published 256-entry tables (matplotlib's
# _cm_listed.py, the authors' data), as floats.
PUBLISHED = {
    "viridis": [(0.267004, 0.004874, 0.329415), (0.127568, 0.566949, 0.550556),
                (0.993248, 0.906157, 0.143936)],
    "magma": [(0.001462, 0.000466, 0.013866), (0.716387, 0.214982, 0.475290),
              (0.987053, 0.991438, 0.749504)],
    "inferno": [(0.001462, 0.000466, 0.013866), (0.735683, 0.215906, 0.330245),
                (0.988362, 0.998364, 0.644924)],
    "plasma": [(0.050383, 0.029803, 0.527975), (0.798216, 0.280197, 0.469538),
               (0.940015, 0.975158, 0.131326)],
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_tables_are_exact(name):
    table = lut(name)
    assert table.shape == (256, 3) and table.dtype == np.uint8
    for index, expected in zip((0, 128, 255), PUBLISHED[name]):
        assert table[index].tolist() == np.rint(np.array(expected) * 255).astype(int).tolist()


# SHA-256 of each whole table as matplotlib 3.11 gives it (its published 256 floats a
# colour, x 255, rounded to uint8), computed outside this project: every entry is pinned,
# not only the three above, and not against the package the tables come from.
MATPLOTLIB_DIGESTS = {
    "viridis": "18545f7c72a02f02a54f2e3f6ff9dcf357e0190ab9117a1f8fae44c6eaf179e0",
    "magma": "f95197e8391d18e2c1db50f2a1ab8650ab7c2a9acb781704a8156872615f002b",
    "inferno": "e24e8bd38b972989f64c42856b2b274df5ada3a62bc01bf8e83500a2ea938ad4",
    "plasma": "7463ac7565e754490c2c358e89b54a99da3e9b3c0be7734ed66b9fc78958b9a6",
}


@pytest.mark.parametrize("name", colormaps.PUBLISHED)
def test_every_entry_is_matplotlibs_rounded(name):
    import hashlib

    assert hashlib.sha256(lut(name).tobytes()).hexdigest() == MATPLOTLIB_DIGESTS[name]


def test_hot_is_matplotlibs_segments():
    table = lut("hot")
    assert table[0].tolist() == [11, 0, 0] and table[255].tolist() == [255, 255, 255]
    assert table[93].tolist()[1:] == [0, 0] and table[190][2] == 0  # red, then yellow, then white


def test_every_name_has_a_table_and_styles_name_known_maps():
    assert all(lut(name).shape == (256, 3) for name in COLORMAP_NAMES)
    assert {style.cmap for style in STYLES.values()} <= set(COLORMAP_NAMES)
    with pytest.raises(KeyError):
        lut("jet")


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        lut("viridis")[0, 0] = 1


def test_alpha_fades_in_over_the_lowest_fifth():
    rgba = with_alpha(lut("hot"))
    assert rgba[0].tolist() == [0, 0, 0, 0]
    assert 0 < rgba[25, 3] < 255 and rgba[51, 3] == 255 and (rgba[51:, 3] == 255).all()
    assert (np.diff(rgba[:, 3].astype(int)) >= 0).all()
