"""Every bench script runs, with tiny settings, so none can break unseen.

Each runs as a user runs it (`python bench/NAME.py ...`) on the samples in gpx/ (or,
for the FIT bench, on ../shared), and must finish, print a figure and say which data
its figures come from. Nothing is timed here: the figures are the scripts' business.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import shared_folder

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
GPX = str(ROOT / "gpx")

# script -> (arguments, what its output must name); {tmp} is the test's folder.
SMOKE = {
    "bench_basemap.py": (["--data", GPX, "--zoom", "12", "--repeat", "1"], "gpx (zoom 12"),
    "bench_blur.py": (["--data", GPX, "--zoom", "13", "--repeat", "1", "--workers", "1", "2"],
                      "heat the same, bit for bit"),
    "bench_build.py": (["--data", GPX, "--skip-gpxpy", "--zoom", "12", "--street-zoom", "13"],
                       "from " + GPX),
    "bench_cache.py": (["--data", GPX, "--rounds", "1"], GPX),
    "bench_cluster.py": (["--data", GPX, "--repeat", "1", "--zoom", "12", "--street-zoom", "13"],
                         GPX + ": 18,519 points read"),
    "bench_fit.py": (["--reps", "1", "--decoder-reps", "1", "--skip-decoders", "--gpx-data", GPX,
                      "--zoom", "12", "--records", "2000"], "FIT_OUT"),
    "bench_many_files.py": (["--files", "30", "--rounds", "1"], "cold / no cache"),
    "bench_outputs.py": (["--data", GPX, "--zoom", "12", "--repeat", "1"], GPX + " at zoom 12"),
    "bench_pyramid.py": (["--data", GPX, "--zoom", "13", "--min-zoom", "11"], "gpx: "),
    "bench_scale.py": (["--data", GPX, "--copies", "1", "--zooms", "12", "--places", "2",
                        "--spread"], "1 copy of gpx over 2 places, the activities dealt"),
    "bench_serve.py": (["--data", GPX, "--copies", "1", "--zooms", "15", "--pan-zooms", "14",
                        "--work", "{tmp}/serve"], "1 copy of gpx"),
    "bench_dedupe.py": (["--sizes", "200", "--repeat", "1"], "| one place | 200 |"),
    "privacy_picture.py": (["--data", GPX, "--zoom", "13", "--out", "{tmp}/privacy.png"],
                           GPX + " at zoom 13"),
    "explorer_picture.py": (["--data", GPX, "--zoom", "13", "--explorer-zoom", "14", "--size",
                             "256", "--out", "{tmp}/explorer.png"], "tiles at zoom 14"),
    "colour_pictures.py": (["--data", GPX, "--zoom", "13", "--zooms", "11", "12",
                            "--out", "{tmp}"], "styles.png"),
    "qgis_picture.py": (["--data", GPX, "--zoom", "12", "--size", "200", "--out",
                         "{tmp}/qgis.png"], "legend items: "),
    "contrast_picture.py": (["--data", GPX, "--zoom", "13", "--out", "{tmp}/normalize.png"],
                            "gpx at zoom 13"),
    "fuzz_inputs.py": (["--files", "20"], "data lost         0"),
}
# Modules the scripts import, not scripts themselves.
HELPERS = {"measure.py", "collection.py", "pictures.py"}
# Scripts whose smoke test checks their figures too, in the tests of what they measure.
SMOKED_ELSEWHERE = {"colour_fidelity.py": "tests/test_colour_fidelity.py"}


def test_every_bench_script_has_a_smoke_test():
    scripts = {p.name for p in BENCH.glob("*.py")} - HELPERS - set(SMOKED_ELSEWHERE)
    assert scripts == set(SMOKE), "give each bench script its tiny settings in SMOKE"


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_bench_script_runs_on_tiny_data(script, tmp_path):
    if script == "bench_fit.py":
        shared_folder("fit-tcx")
        shared_folder("garmin-tree")
    if script in ("explorer_picture.py", "qgis_picture.py") and subprocess.run(
            ["/usr/bin/python3", "-c", "import qgis.core"], capture_output=True).returncode:
        pytest.skip("QGIS draws this picture: apt-get install python3-qgis")
    arguments, names = SMOKE[script]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the scripts' temporary outputs
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *(a.format(tmp=tmp_path) for a in arguments)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert names in done.stdout, done.stdout[-3000:]
