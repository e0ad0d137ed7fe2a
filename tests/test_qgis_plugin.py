"""geoheat's QGIS plugin: `geoheat qgis-plugin`, the command line it builds, and the
plugin itself in a headless QGIS (where Debian's python3-qgis is installed)."""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoheat import __version__
from geoheat.cli import cli
from geoheat.colormaps import STYLE_NAMES
from geoheat.privacy import SHARE_HINT
from geoheat.qgis_plugin import command

from .conftest import shared_folder

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "gpx"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-qgis
PLUGIN_FILES = ["__init__.py", "algorithm.py", "command.py", "geoheat.json", "metadata.txt",
                "plugin.py", "provider.py"]


def write_plugin(folder, *extra):
    return CliRunner().invoke(cli, ["qgis-plugin", str(folder), *extra])


# --- geoheat qgis-plugin ------------------------------------------------------------------

def test_the_plugin_folder_holds_the_package_files(tmp_path):
    done = write_plugin(tmp_path)
    assert done.exit_code == 0, done.output
    plugin = tmp_path / "geoheat_qgis"
    assert sorted(p.name for p in plugin.iterdir()) == PLUGIN_FILES
    package = resources.files("geoheat") / "qgis_plugin"
    for name in ("__init__.py", "algorithm.py", "command.py", "plugin.py", "provider.py"):
        assert (plugin / name).read_bytes() == (package / name).read_bytes()
    metadata = (plugin / "metadata.txt").read_text()
    assert f"\nversion={__version__}\n" in metadata
    assert "\nhasProcessingProvider=yes\n" in metadata and "\nname=geoheat\n" in metadata
    record = json.loads((plugin / "geoheat.json").read_text())
    assert record == {"written_by": "geoheat qgis-plugin", "version": __version__,
                      "styles": list(STYLE_NAMES), "command": [sys.executable, "-m", "geoheat"]}
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_the_zip_installs_as_one_plugin_folder(tmp_path):
    done = write_plugin(tmp_path, "--zip")
    assert done.exit_code == 0, done.output
    with zipfile.ZipFile(tmp_path / "geoheat_qgis.zip") as archive:
        names = sorted(archive.namelist())
        assert names == [f"geoheat_qgis/{name}" for name in PLUGIN_FILES]
        assert archive.read("geoheat_qgis/command.py") == \
            (resources.files("geoheat") / "qgis_plugin" / "command.py").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["geoheat_qgis.zip"]


def test_writing_again_updates_only_what_it_wrote(tmp_path):
    assert write_plugin(tmp_path).exit_code == 0
    plugin = tmp_path / "geoheat_qgis"
    (plugin / "command.py").write_text("# an old version\n")
    (plugin / "__pycache__").mkdir()  # QGIS's: left alone
    (plugin / "__pycache__" / "command.cpython-311.pyc").write_bytes(b"x")
    assert write_plugin(tmp_path).exit_code == 0
    assert (plugin / "command.py").read_bytes() == \
        (resources.files("geoheat") / "qgis_plugin" / "command.py").read_bytes()
    assert (plugin / "__pycache__" / "command.cpython-311.pyc").read_bytes() == b"x"
    assert write_plugin(tmp_path, "--zip").exit_code == 0
    assert write_plugin(tmp_path, "--zip").exit_code == 0


@pytest.mark.parametrize("make", ["folder", "file", "link", "zip", "not a zip"])
def test_a_name_taken_by_something_else_is_refused(tmp_path, make):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "geoheat.json").write_text('{"written_by": "geoheat qgis-plugin"}')
    target, extra = tmp_path / "geoheat_qgis", []
    if make == "folder":
        target.mkdir()
        (target / "metadata.txt").write_text("mine")
    elif make == "file":
        target.write_text("mine")
    elif make == "link":
        target.symlink_to(other)  # ours in looks, but reached through a link
    else:
        target, extra = tmp_path / "geoheat_qgis.zip", ["--zip"]
        if make == "zip":
            with zipfile.ZipFile(target, "w") as archive:
                archive.writestr("someone/metadata.txt", "mine")
        else:
            target.write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    done = write_plugin(tmp_path, *extra)
    assert done.exit_code == 2
    assert done.output == (f"geoheat: error: {target}: exists and was not written by geoheat "
                           f"qgis-plugin; move it away or name another "
                           f"{'file' if extra else 'folder'}\n")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_missing_folder_is_one_line(tmp_path):
    done = write_plugin(tmp_path / "nope")
    assert done.exit_code == 2
    assert done.output == f"geoheat: error: {tmp_path / 'nope'}: no such folder\n"


# --- the command line and its output ------------------------------------------------------

def test_the_command_line_from_the_parameters():
    line = command.build_command(["geoheat"], ["runs", "-odd.gpx"], "out/h.tif", "r.json",
                                 zoom="12", sigma=2, types=" Ride,Run ", years="2024",
                                 style="strava", normalize="local", basemap="osm",
                                 mbtiles="h.mbtiles", pmtiles="")
    assert line == ["geoheat", "build", "--output", "out/h.tif", "--report", "r.json",
                    "--zoom", "12", "--sigma", "2.0", "--style", "strava",
                    "--normalize", "local", "--basemap", "osm", "--png", "--type", "Ride,Run",
                    "--year", "2024", "--mbtiles", "h.mbtiles", "--", "runs", "-odd.gpx"]
    plain = command.build_command(["python", "-m", "geoheat"], ["runs"], "h.tif", "r.json")
    assert plain == ["python", "-m", "geoheat", "build", "--output", "h.tif", "--report",
                     "r.json", "--zoom", "auto", "--sigma", "1.0", "--style", "hot",
                     "--normalize", "global", "--basemap", "none", "--", "runs"]


def test_the_command_lines_are_read():
    assert command.read_line("geoheat: progress: Reading activities 3/37\n") == \
        ("progress", ("Reading activities", 3, 37))
    assert command.read_line("geoheat: progress: Fetching map tiles 9/\n") == \
        ("progress", ("Fetching map tiles", 9, None))
    assert command.read_line("geoheat: warning: skipped 2 files: x\n") == \
        ("warning", "skipped 2 files: x")
    assert command.read_line("geoheat: error: runs: no such file or folder\n") == \
        ("error", "runs: no such file or folder")
    assert command.read_line("geoheat: interrupted\n") == ("interrupted", None)
    assert command.read_line("geoheat: 31 files read\n") == ("info", "geoheat: 31 files read")
    assert command.percent(3, 37) == pytest.approx(300 / 37) and command.percent(3, None) == 0
    assert command.failure(["geoheat: warning: w\n", "geoheat: error: bad zoom\n"], 2) == \
        "bad zoom"
    assert command.failure(["Traceback ...\n", "MemoryError\n"], 1) == \
        "geoheat stopped (exit code 1): MemoryError"
    assert command.failure([], -9) == "geoheat stopped (exit code -9)"


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_the_geoheat_command_is_the_setting_then_path_then_the_writer(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mine = executable(tmp_path / "my-geoheat", "#!/bin/sh\n")
    which_here = lambda name: shutil.which(name, path=str(bin_dir))  # noqa: E731
    recorded = [sys.executable, "-m", "geoheat"]
    assert command.find_geoheat(str(mine), which_here, recorded) == [str(mine)]
    assert command.find_geoheat("", which_here, recorded) == recorded
    on_path = executable(bin_dir / "geoheat", "#!/bin/sh\n")
    assert command.find_geoheat("", which_here, recorded) == [str(on_path)]
    with pytest.raises(LookupError, match="set in the Processing options, /no/such, is not"):
        command.find_geoheat("/no/such", which_here, recorded)
    on_path.unlink()
    with pytest.raises(LookupError, match="the geoheat command was not found"):
        command.find_geoheat("", which_here, ["/no/such/python", "-m", "geoheat"])


def test_progress_lines_for_a_program_reading_stderr(tmp_path):
    """GEOHEAT_PROGRESS=lines: what the plugin turns into the dialog's progress bar."""
    done = subprocess.run(
        [sys.executable, "-m", "geoheat", "build", str(SAMPLES), "--no-cache", "--zoom", "10",
         "--basemap", "none", "-o", str(tmp_path / "h.tif")],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "GEOHEAT_PROGRESS": "lines"})
    assert done.returncode == 0, done.stderr
    files = len(list(SAMPLES.iterdir()))
    progress = [command.read_line(line)[1] for line in done.stderr.splitlines()
                if command.read_line(line)[0] == "progress"]
    assert progress[0] == ("Reading activities", 0, files)
    assert progress[-1] == ("Reading activities", files, files)
    assert [p[1] for p in progress] == sorted({p[1] for p in progress})  # each step once
    quiet = subprocess.run(
        [sys.executable, "-m", "geoheat", "build", str(SAMPLES), "--no-cache", "--zoom", "10",
         "--basemap", "none", "-o", str(tmp_path / "q.tif")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "geoheat: progress:" not in quiet.stderr  # a pipe without the variable: none


# --- the plugin in a headless QGIS --------------------------------------------------------

def qgis_missing() -> str | None:
    """Why the QGIS tests cannot run here, or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found: the QGIS tests need Debian's python3-qgis"
    found = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core, qgis.analysis"],
                           capture_output=True, text=True)
    if found.returncode:
        return ("QGIS's Python bindings are not installed (apt-get install qgis python3-qgis): "
                + (found.stderr.strip().splitlines() or ["?"])[-1])
    return None


@pytest.fixture(scope="module")
def qgis(tmp_path_factory):
    """One headless QGIS (it takes seconds to start) running every case below: the
    plugin written by `geoheat qgis-plugin`, loaded as QGIS loads it."""
    why = qgis_missing()
    if why:
        pytest.skip(why)
    garmin = shared_folder("garmin-tree") / "GPX_OUT"
    chengdu = shared_folder("chengdu-runs")
    base = tmp_path_factory.mktemp("qgis")
    plugins, out, home = base / "plugins", base / "out", base / "home"
    for folder in (plugins, out, home, home / "run"):
        folder.mkdir()
    (home / "run").chmod(0o700)
    assert write_plugin(plugins).exit_code == 0
    # The plugin runs geoheat without QGIS's PYTHONPATH: these wrappers run this checkout
    # with this venv's Python, and say they ran. One is the provider's setting; the
    # other stands for the interpreter that wrote the plugin, recorded in geoheat.json.
    wrappers = {}
    for name in ("my-geoheat", "writer-geoheat"):
        wrappers[name] = executable(
            base / name, f'#!/bin/sh\necho "$@" > "{base / name}.ran"\n'
                         f'PYTHONPATH="{ROOT}" exec "{sys.executable}" -m geoheat "$@"\n')
    record = plugins / "geoheat_qgis" / "geoheat.json"
    written = json.loads(record.read_text())
    assert written["command"] == [sys.executable, "-m", "geoheat"]
    record.write_text(json.dumps({**written, "command": [str(wrappers["writer-geoheat"])]}))
    heat = out / "heat.tif"
    cases = [
        {"name": "build", "params": {
            "INPUT": [str(garmin)], "ZOOM": "10", "SIGMA": 1.5, "STYLE": "hot",
            "NORMALIZE": "global", "BASEMAP": "none", "MBTILES": str(out / "heat.mbtiles"),
            "OUTPUT": str(heat)}},
        {"name": "cancel", "cancel": True, "params": {
            "INPUT": [str(chengdu)], "ZOOM": "12", "SIGMA": 3, "OUTPUT": str(heat)}},
        {"name": "load", "load": True, "params": {
            "INPUT": [str(garmin)], "ZOOM": "9", "TYPES": "Ride", "STYLE": "strava",
            "OUTPUT": str(out / "rides.tif")}},
        {"name": "error", "params": {"INPUT": [str(base / "nothing")],
                                     "OUTPUT": str(out / "none.tif")}},
        {"name": "setting", "setting": str(wrappers["my-geoheat"]), "params": {
            "INPUT": [str(garmin)], "ZOOM": "8", "OUTPUT": "TEMPORARY_OUTPUT"}},
    ]
    (base / "cases.json").write_text(json.dumps(cases))
    # No geoheat on PATH: without the setting, the plugin falls back on the writer's.
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not os.path.exists(os.path.join(d, "geoheat")))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home),
           "XDG_RUNTIME_DIR": str(home / "run"), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
           "GEOHEAT_CACHE_DIR": str(base / "cache"), "PATH": path}
    done = subprocess.run([SYSTEM_PYTHON, str(ROOT / "tests" / "qgis_headless.py"),
                           str(plugins), str(base / "cases.json"), str(base / "results.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((base / "results.json").read_text())
    results["base"], results["wrappers"] = base, wrappers
    return results


def test_the_plugin_registers_its_provider_headless(qgis):
    assert qgis["provider"] and qgis["unloaded"]
    assert qgis["parameters"] == ["INPUT", "ZOOM", "SIGMA", "TYPES", "YEARS", "STYLE",
                                  "NORMALIZE", "BASEMAP", "MBTILES", "PMTILES", "OUTPUT"]
    assert {"OUTPUT", "MBTILES", "PMTILES", "DRAWN", "ZOOM_USED"} <= set(qgis["outputs"])


def test_a_build_in_qgis_makes_the_styled_geotiff(qgis):
    """garmin-tree/GPX_OUT at zoom 10: 25 of its 37 files drawn (6 have no points, 6
    lie outside the main area), as `geoheat build` says."""
    case = qgis["cases"]["build"]
    assert "error" not in case, case
    out = qgis["base"] / "out"
    assert case["results"] == {"OUTPUT": str(out / "heat.tif"), "DRAWN": 25, "ZOOM_USED": 10,
                               "MBTILES": str(out / "heat.mbtiles")}
    assert case["layer"]["valid"] and case["layer"]["crs"] == "EPSG:3857"
    assert case["layer"]["renderer"] == "singlebandpseudocolor"  # heat.qml, beside it
    import rasterio

    with rasterio.open(out / "heat.tif") as tif:
        assert tif.crs.to_epsg() == 3857
        assert (tif.width, tif.height) == (case["layer"]["width"], case["layer"]["height"])
        assert tif.read(1).max() > 0
    assert (out / "heat.qml").is_file() and (out / "heat.mbtiles").is_file()
    assert case["seen"]["warning"] == [
        "skipped 6 files: no track points: "
        f"{shared_folder('garmin-tree')}/GPX_OUT/446724793.gpx, "
        f"{shared_folder('garmin-tree')}/GPX_OUT/454815506.gpx, "
        f"{shared_folder('garmin-tree')}/GPX_OUT/454815507.gpx and 3 more (--verbose lists them)",
        SHARE_HINT]  # it writes MBTiles, made to be shared
    assert "Reading activities" in case["seen"]["progress"]
    assert any(line.startswith("geoheat: 31 files read") for line in case["seen"]["info"])
    options = case["seen"]["command"][0].split(" -- ")[0]
    assert " --basemap none " in options and " --png" not in options


def test_cancel_stops_the_build_and_leaves_the_last_outputs(qgis):
    build, case = qgis["cases"]["build"], qgis["cases"]["cancel"]
    assert case["canceled"]
    assert case["error"].startswith("QgsProcessingException: ")
    assert "canceled: the build stopped; outputs of an earlier build are as they were" \
        in case["error"]
    assert case["before"] == build["after"] == case["after"]  # heat.tif as the build left it
    assert case["left_running"] == []  # the command and its workers ended
    out = qgis["base"] / "out"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("heat")) == \
        ["heat.mbtiles", "heat.qml", "heat.tif"]
    # Nothing staged left behind: only the lock files of each output set.
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == \
        [".heat.geoheat-lock", ".rides.geoheat-lock"]


def test_loaded_results_carry_the_style(qgis):
    case = qgis["cases"]["load"]
    assert "error" not in case, case
    rides = str(qgis["base"] / "out" / "rides.tif")
    assert case["results"]["OUTPUT"] == rides and case["results"]["ZOOM_USED"] == 9
    assert case["results"]["DRAWN"] == 15  # the Rides of the build above
    assert [(source, kind) for source, kind in case["loaded"]] == \
        [(rides, "singlebandpseudocolor")]


def test_an_error_is_the_builds_one_line(qgis):
    case = qgis["cases"]["error"]
    nothing = qgis["base"] / "nothing"
    assert case["error"].startswith("QgsProcessingException: ")
    assert case["error"].endswith(f"{nothing}: no such file or folder")
    assert "Traceback" not in case["error"]


def test_the_command_set_in_the_providers_settings_is_used(qgis):
    """Also: a temporary output (QGIS names a .tif in its own temporary folder)."""
    case = qgis["cases"]["setting"]
    assert "error" not in case, case
    assert case["results"]["ZOOM_USED"] == 8 and case["results"]["OUTPUT"].endswith(".tif")
    assert case["layer"]["valid"] and case["layer"]["renderer"] == "singlebandpseudocolor"
    wrapper = qgis["wrappers"]["my-geoheat"]
    assert Path(f"{wrapper}.ran").read_text().startswith("build --output ")
    assert case["seen"]["command"][0].startswith(f"{wrapper} build ")


def test_without_the_setting_the_writers_geoheat_runs(qgis):
    """geoheat is not on PATH here: the command recorded by `geoheat qgis-plugin` runs."""
    wrapper = qgis["wrappers"]["writer-geoheat"]
    assert qgis["cases"]["build"]["seen"]["command"][0].startswith(f"{wrapper} build ")
    assert Path(f"{wrapper}.ran").is_file()


def test_the_commands_environment_is_not_qgiss_python():
    env = command.environment({"PATH": "/bin", "PYTHONHOME": "/qgis", "PYTHONPATH": "/qgis/py",
                               "GEOHEAT_CACHE_DIR": "/c"})
    assert env == {"PATH": "/bin", "GEOHEAT_CACHE_DIR": "/c", "GEOHEAT_PROGRESS": "lines",
                   "PYTHONIOENCODING": "utf-8"}
