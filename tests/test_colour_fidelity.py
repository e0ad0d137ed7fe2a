"""The colours tell how often: heat against passes on real tracks, the legends against
the heat, the light style against a light map, every level against the top.

Read back from a real build of ../shared/data/chengdu-runs at zoom 16 (the heat and
--counts GeoTIFFs, the QGIS style, the MBTiles), pixel by pixel.
"""

import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

import geoheat
from geoheat import legend
from geoheat.colormaps import STYLES, lut, with_alpha
from geoheat.colour import lut_index
from geoheat.heat import LOW
from geoheat.options import BuildOptions

from .conftest import shared_folder

ROOT = Path(__file__).resolve().parents[1]
OSM_LAND = (242, 239, 233)  # #F2EFE9


@pytest.fixture(scope="module")
def chengdu(tmp_path_factory):
    folder = shared_folder("chengdu-runs")
    out = tmp_path_factory.mktemp("fidelity")
    result = geoheat.build([folder], out / "h.tif", zoom=16, counts=True,
                           mbtiles=out / "h.mbtiles", parse_cache=None)
    with rasterio.open(out / "h.tif") as src:
        heat = src.read(1)
    with rasterio.open(out / "h-counts.tif") as src:
        counts = src.read(1)
    return out, result, heat, counts


def medians_by_count(heat, counts):
    lit = counts > 0
    c, h = counts[lit], heat[lit]
    values = np.unique(c)
    return values, np.array([np.median(h[c == v]) for v in values]), c, h


def test_colour_follows_passes_on_real_runs(chengdu):
    _, result, heat, counts = chengdu
    assert result.activities >= 40
    values, medians, c, h = medians_by_count(heat, counts)
    # More passes, never less heat; 1, 2 and 3 passes clearly apart.
    assert (np.diff(medians) >= 0).all()
    one, two, three = (medians[values == n][0] for n in (1, 2, 3))
    assert two - one >= 0.08 and three - two >= 0.03
    # The colours spread over the range the data has...
    p90 = values[np.searchsorted(values, np.percentile(c, 90))]
    assert medians[values == p90][0] - one >= 0.4
    # ...and the top colour is for the busiest, not for anything run a few times.
    top = lut_index(h) == 255
    assert top[c <= np.median(c)].mean() <= 0.05


def test_the_qml_labels_sit_at_the_heat_those_passes_are_drawn_with(chengdu):
    out, _, heat, counts = chengdu
    values, medians, _, _ = medians_by_count(heat, counts)
    items = ET.parse(out / "h.qml").getroot().findall(".//colorrampshader/item")
    labelled = {}
    for item in items[1:]:
        found = re.fullmatch(r"([\d,]+) pass(es)?", item.get("label"))
        assert found, item.get("label")
        labelled[int(found[1].replace(",", ""))] = float(item.get("value"))
    assert len(labelled) >= 5 and 1 in labelled and int(values[-1]) in labelled
    for n, at in labelled.items():
        assert abs(at - medians[values == n][0]) <= 0.08, (n, at)
    # The PNG's key names some of the same counts, at the same places.
    counted = {(0, 0): counts}  # one block is enough for the legend's distribution
    ticks, _ = legend.key_ticks(counted, BuildOptions(inputs=["x"]))
    for h, text in ticks:
        n = int(text.replace(",", ""))
        assert n in labelled and labelled[n] == pytest.approx(h, abs=1e-5)


def lit_alpha(rgba):
    alpha = rgba[3]
    return alpha[alpha > 0]


def test_every_level_reads_like_the_top(chengdu):
    out, _, _, _ = chengdu
    alphas = {}
    with contextlib.closing(sqlite3.connect(out / "h.mbtiles")) as db:
        for z, data in db.execute("SELECT zoom_level, tile_data FROM tiles"):
            with MemoryFile(bytes(data)) as mem, mem.open() as png:
                alphas.setdefault(z, []).append(lit_alpha(png.read()))
    medians = {z: float(np.median(np.concatenate(a))) for z, a in alphas.items()}
    top = medians[max(medians)]
    assert len(medians) >= 4
    assert all(m >= 0.8 * top for m in medians.values()), medians
    # The COG's overviews too (each level's own heat, as the MBTiles levels).
    table = with_alpha(lut("hot"))
    with rasterio.open(out / "h.tif") as src:
        full = src.read(1)
        top_alpha = np.median(lit_alpha(table[lut_index(full)].T))
        for factor in src.overviews(1):
            with rasterio.open(out / "h.tif", overview_level=src.overviews(1).index(factor)) as ov:
                level = ov.read(1)
            assert np.median(lit_alpha(table[lut_index(level)].T)) >= 0.8 * top_alpha, factor


def relative_luminance(rgb):
    c = np.asarray(rgb, dtype=float) / 255
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return c @ [0.2126, 0.7152, 0.0722]


def contrast(a, b):
    la, lb = relative_luminance(a), relative_luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_the_light_style_stands_out_on_a_light_map():
    table = lut("light")
    low = int(np.ceil(LOW * 255))
    # Every colour a line can have (from the fewest passes up) is >= 3:1 on OSM's land.
    ratios = [contrast(table[i], OSM_LAND) for i in range(low, 256)]
    assert min(ratios) >= 3.0
    # No dark halo: the fringe (below LOW) is the fewest passes' colour, only fading.
    assert (table[:low] == table[low]).all()
    assert STYLES["light"].light and STYLES["light"].background == OSM_LAND
    # Against 'hot' and 'strava', whose busiest end vanishes on it.
    assert contrast(lut("strava")[255], OSM_LAND) < 1.5
    assert contrast(lut("hot")[255], OSM_LAND) < 1.5


def test_a_light_build_on_real_runs(chengdu, tmp_path):
    _, _, heat, counts = chengdu
    folder = shared_folder("chengdu-runs")
    geoheat.build([folder], tmp_path / "l.png", zoom=16, style="light", basemap=None,
                  legend=False)
    with rasterio.open(tmp_path / "l.png") as png:
        picture = png.read()
    assert tuple(picture[:, 0, 0]) == OSM_LAND  # no heat: the light ground
    lit = counts > 0
    one = lit & (counts == 1)
    busiest = lit & (counts >= np.percentile(counts[lit], 99))
    for pixels in (one, busiest):
        colours = picture[:, pixels].T
        ratios = [contrast(c, OSM_LAND) for c in colours[:: max(len(colours) // 500, 1)]]
        assert np.median(ratios) >= 3.0
    # The fringe fades into the ground: never darker than the line it surrounds.
    fringe = (heat > 0) & ~lit
    assert relative_luminance(picture[:, fringe].T).min() >= relative_luminance(
        lut("light")[255]) - 1e-9


def test_colour_fidelity_bench_runs_on_the_samples():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "colour_fidelity.py"),
                          str(ROOT / "gpx"), "--zoom", "13"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "| passes | pixels | median heat | top colour | legend at | legend error |" in out
    assert "- medians never fall: True" in out
    worst = re.search(r"- legend: items, worst error: (\d+), ([\d.]+)", out)
    assert worst and int(worst[1]) >= 2 and float(worst[2]) <= 0.08
