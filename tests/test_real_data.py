"""Real GPX files from ../shared/data, read in place (skipped when ../shared is absent)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy.spatial import cKDTree

import geoheat
from geoheat import GPXError, read_gpx
from geoheat.projection import project
from geoheat.gpx import HEAD_BYTES, start_time

from .conftest import shared_folder

# Files of gpx-variety that hold no track point (routes, waypoints or nothing).
NO_TRACKS = {
    "custom_schema_locations.gpx", "default_schema_locations.gpx", "gpx1.1_with_extensions.gpx",
    "gpx1.1_with_extensions_without_namespaces.gpx", "gpx_with_garmin_extension.gpx",
    "route.gpx", "unicode.gpx", "unicode2.gpx", "unicode_with_bom.gpx",
    "unicode_with_bom_noencoding.gpx",
}


# The four runs made about 65 km south-west of all the others.
FAR_RUNS = {"566102260.gpx", "566953679.gpx", "567688521.gpx", "580856357.gpx"}


@pytest.fixture(scope="module")
def chengdu_subset():
    """Every 12th of the home runs, then one far run."""
    files = sorted(shared_folder("chengdu-runs").glob("*.gpx"))
    assert len(files) == 184
    home = [f for f in files if f.name not in FAR_RUNS]
    return home[::12] + [f for f in files if f.name == "580856357.gpx"]


def test_chengdu_hot_pixels_lie_on_the_runs(tmp_path, chengdu_subset):
    result = geoheat.build(chengdu_subset, tmp_path / "h.png", zoom=15, sigma=1)
    # The far run is outside the auto extent, so every other point is drawn.
    far = read_gpx(chengdu_subset[-1]).points
    assert result.points_outside == far
    assert result.points_used == result.points_read - far
    tracks = np.concatenate([s for f in chengdu_subset[:-1] for s in read_gpx(f).segments])
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        band = src.read(1)
        rows, cols = np.nonzero(band > 0.5)
        assert len(rows) > 1000
        xs, ys = src.xy(rows, cols)
    distance, _ = cKDTree(project(tracks)).query(np.column_stack([xs, ys]))
    pixel = geoheat.tiles.resolution(15)
    assert distance.max() < 3 * pixel  # within three pixels of a real trackpoint


def test_chengdu_extent_all_keeps_the_far_run(tmp_path, chengdu_subset):
    auto = geoheat.build(chengdu_subset, tmp_path / "a.png", zoom=12, sigma=0)
    everything = geoheat.build(chengdu_subset, tmp_path / "b.png", zoom=12, sigma=0, extent="all")
    assert everything.points_outside == 0
    assert everything.grid.width * everything.grid.height > 4 * auto.grid.width * auto.grid.height


def test_chengdu_start_years_match_the_readme():
    files = sorted(shared_folder("chengdu-runs").glob("*.gpx"))
    years = Counter()
    for path in files:
        with open(path, "rb") as f:
            years[start_time(f.read(HEAD_BYTES)).year] += 1
    assert years == {2024: 68, 2025: 96, 2026: 20}


def test_every_gpx_variety_file_is_read_or_skipped(tmp_path):
    folder = shared_folder("gpx-variety")
    names = sorted(p.name for p in folder.glob("*.gpx"))
    assert len(names) == 28
    for name in names:
        try:
            activity = read_gpx(folder / name)
        except GPXError as err:  # a clear one-line reason, never another exception
            assert str(err).startswith(str(folder / name)) and "\n" not in str(err)
            continue
        assert (activity.points == 0) == (name in NO_TRACKS), name
    warnings = []
    result = geoheat.build([folder], tmp_path / "v.png", extent="all", on_warning=warnings.append)
    skipped = {Path(name).name for name, _ in result.skipped}
    assert skipped == NO_TRACKS
    assert result.files_read == 28 - len(NO_TRACKS)
    # One line for the ten files with no track, naming the first three; one for a
    # file whose clock was never set (1901).
    assert len(warnings) == 2 and warnings[0].startswith(f"skipped {len(NO_TRACKS)} files: no ")
    assert warnings[0].endswith(f"and {len(NO_TRACKS) - 3} more (--verbose lists them)")
    assert warnings[1].endswith("Mojstrovka.gpx: time 1901-12-13 is implausible (an unset "
                                "clock?); counted as no time")
    every = []
    geoheat.build([folder], tmp_path / "v.png", extent="all", verbose=True, on_warning=every.append)
    assert len(every) == len(NO_TRACKS) + 1
    assert any("route.gpx: no track points (only 1 route)" in w for w in every)
