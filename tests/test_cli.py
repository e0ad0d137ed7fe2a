"""The geoheat command: options, summary, and bad input (one line, exit code, no outputs)."""

import os
import re
import subprocess
import sys

import pytest
import rasterio
from click.testing import CliRunner

from geoheat.cli import cli

GOOD = [(14.50, 46.05), (14.501, 46.051), (14.502, 46.052), (14.503, 46.053)]


def run(*args):
    """geoheat build with args; no basemap unless the args ask for one."""
    extra = [] if "--basemap" in args else ["--basemap", "none"]
    return CliRunner().invoke(cli, ["build", *map(str, args), *extra])


def error_line(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("geoheat: error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def tracks(tmp_path, write_gpx):
    folder = tmp_path / "tracks"
    write_gpx("a-Ride.gpx", GOOD, folder=folder)
    write_gpx("b-Run.gpx", GOOD[:2], folder=folder)
    return folder


def test_build_writes_outputs_and_one_line_summary(tmp_path, tracks):
    result = run(tracks, "-o", tmp_path / "h.png", "--csv", "--zoom", "14")
    assert result.exit_code == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert re.match(r"geoheat: 2 files read; 6 points used; zoom 14, \d+x\d+ px; [\d.]+ s -> ", summary)
    assert {p.name for p in tmp_path.iterdir()} >= {"h.png", "h-heat.tif", "h.csv"}


def test_seed_option_names_still_work(tmp_path, tracks):
    result = run("--gpx-dir", tracks, "--gpx-filter", "*Ride*", "--gpx-year", "2024",
                 "--gpx-bound", "46", "46.1", "14.4", "14.6", "--output", tmp_path / "h.png",
                 "--zoom", "12", "--sigma", "2", "--no-cdist")
    # The generated tracks have no time, so --gpx-year leaves nothing: a clear error.
    assert result.exit_code == 2
    assert "nothing to draw" in error_line(result)
    result = run("--gpx-dir", tracks, "--gpx-filter", "*Ride*", "--gpx-bound", "46", "46.1",
                 "14.4", "14.6", "--output", tmp_path / "h.png", "--zoom", "12", "--no-cdist")
    assert result.exit_code == 0, result.stderr
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert src.tags()["SCALING"] == "linear" and src.tags()["FILES"] == "1"


def test_quiet_prints_nothing(tmp_path, tracks):
    (tracks / "broken.gpx").write_text("<gpx><trk>")
    result = run(tracks, "-o", tmp_path / "h.png", "--quiet")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""


def test_bad_file_among_good_is_skipped_and_counted(tmp_path, tracks):
    (tracks / "empty.gpx").write_bytes(b"")
    (tracks / "trunc.gpx").write_text('<gpx version="1.1"><trk><trkseg><trkpt lat="1" lon="2">')
    result = run(tracks, "-o", tmp_path / "h.png")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert any("empty.gpx: empty file" in w for w in warnings)
    assert any("trunc.gpx: broken or truncated XML" in w for w in warnings)
    assert "2 files read, 2 skipped" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing"], "missing: no such file or folder"),
        (["{tracks}", "--filter", "*.fit"], "no file matches '*.fit'"),
        (["{tracks}", "--year", "1990"], "nothing to draw"),
        (["{tracks}", "--zoom", "20"], "zoom must be 0-19"),
        (["{tracks}", "--zoom", "big"], "zoom must be 0-19"),
        (["{tracks}", "--bounds", "47", "46", "14", "15"], "LAT_MIN < LAT_MAX"),
        (["{tracks}", "--bounds", "10", "11", "10", "11"], "no trackpoint lies inside --bounds"),
        (["{tracks}", "--sigma", "-1"], "sigma"),
        (["{tracks}", "-o", "{tmp}/nowhere/h.png"], "does not exist"),
        (["{tracks}", "-o", "{tracks}/a-Ride.gpx/h.png"], "is not a folder"),
        (["{tracks}", "-o", "{tmp}/h.jpg"], "must end in .png"),
        (["{tracks}", "--no-such-option"], "No such option"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_outputs(tmp_path, tracks, args, message):
    args = [a.format(tmp=tmp_path, tracks=tracks) for a in args]
    before = sorted(tmp_path.rglob("*"))
    result = run(*args, *([] if "-o" in args else ["-o", tmp_path / "h.png"]))
    assert result.exit_code == 2
    assert message in error_line(result)
    assert sorted(tmp_path.rglob("*")) == before


def test_all_files_bad_is_an_error(tmp_path):
    (tmp_path / "a.gpx").write_text("not xml")
    (tmp_path / "b.gpx").write_bytes(b"")
    result = run(tmp_path, "-o", tmp_path / "h.png")
    assert result.exit_code == 2
    assert "nothing to draw: 2 files found, 0 with track points, 2 skipped" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unwritable_output_folder(tmp_path, tracks):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        probe = locked / "probe"
        try:
            probe.touch()
            probe.unlink()
            pytest.skip("running as a user who can write anywhere (root)")
        except PermissionError:
            pass
        result = run(tracks, "-o", locked / "h.png")
        assert result.exit_code == 2 and "cannot write in" in error_line(result)
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not os.access("/sys", os.F_OK), reason="needs Linux's read-only /sys")
def test_output_in_a_folder_even_root_cannot_write(tracks):
    result = run(tracks, "-o", "/sys/h.png")
    assert result.exit_code == 2
    assert error_line(result).startswith("geoheat: error: /sys/h.png: cannot write in /sys (")


def test_console_script_runs_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "geoheat", "build", str(tmp_path / "none")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"geoheat: error: {tmp_path / 'none'}: no such file or folder"


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.startswith("geoheat, version ")
    help_text = runner.invoke(cli, ["build", "--help"]).output
    for option in ("--gpx-dir", "--gpx-filter", "--gpx-year", "--gpx-bound", "--zoom", "--sigma",
                   "--no-cdist", "--csv", "--output", "--extent", "--max-size", "--quiet"):
        assert option in help_text


def test_scaling_option_and_its_old_alias(tmp_path, tracks):
    for flags, expected in ((["--scaling", "linear"], "linear"), (["--no-cdist"], "linear"),
                            ([], "cdf"), (["--scaling", "cdf"], "cdf")):
        result = run(tracks, "-o", tmp_path / "h.png", "--zoom", "14", *flags)
        assert result.exit_code == 0, result.stderr
        with rasterio.open(tmp_path / "h-heat.tif") as src:
            assert src.tags()["SCALING"] == expected


def test_the_original_scripts_newer_flags(tmp_path, tracks):
    plain = run("--dir", tracks, "-o", tmp_path / "a.png", "--zoom", "-1")
    orange = run("--dir", tracks, "-o", tmp_path / "b.png", "--zoom", "-1", "--orange")
    assert plain.exit_code == 0 and orange.exit_code == 0, plain.stderr + orange.stderr
    assert re.search(r"zoom \d+,", plain.stderr)  # -1 is the automatic zoom
    with rasterio.open(tmp_path / "a.png") as a, rasterio.open(tmp_path / "b.png") as b:
        assert (a.read() != b.read()).any()  # the strava look
        assert tuple(b.read()[:, 0, 0]) == (10, 12, 16)  # its background
    years = run(tracks, "-o", tmp_path / "c.png", "--year", "2023,2024", "--year", "2025")
    assert "no time, so no year" in error_line(years)


def test_jobs_beyond_the_cores_are_refused_in_one_line(tmp_path, tracks):
    result = run(tracks, "-o", tmp_path / "h.png", "--jobs", "999")
    assert result.exit_code == 2
    assert "jobs must be 1-" in error_line(result)


def test_help_imports_nothing_heavy():
    code = ("import sys; from geoheat.cli import cli\n"
            "try: cli(['build', '--help'])\nexcept SystemExit: pass\n"
            "heavy = {'numpy', 'rasterio', 'fiona', 'scipy', 'pyproj'} & set(sys.modules)\n"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_report_counts_what_the_summary_counts(tmp_path, tracks):
    import json
    from pathlib import Path

    (tracks / "broken.gpx").write_text("<gpx><trk>")
    # The same file again, without a time: the same activity all the same (its track).
    (tracks / "c-Ride.gpx").write_text((tracks / "a-Ride.gpx").read_text())
    result = run(tracks, "-o", tmp_path / "h.png", "--zoom", "14", "--report",
                 tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["activities"] == {"found": 4, "drawn": 2, "duplicates": 1, "skipped": 1,
                                    "left_out": {}, "by_type": {"untyped": 2},
                                    "by_format": {"gpx": 2}}
    assert report["points"] == {"read": 10, "used": 6, "outside": 0, "invalid": 0,
                                "left_out": 4}
    assert {f["status"] for f in report["files"] if f["path"].endswith("c-Ride.gpx")} == {
        "duplicate"}
    files = {Path(f["path"]).name: f for f in report["files"]}
    assert files["broken.gpx"]["status"] == "skipped"
    assert files["broken.gpx"]["reason"].startswith("broken or truncated XML")
    assert files["a-Ride.gpx"] == {"path": str(tracks / "a-Ride.gpx"), "status": "drawn",
                                   "reason": None, "format": "gpx", "type": None,
                                   "start": None, "points": 4}
    assert report["zoom"] == 14 and len(report["size"]) == 2
    with rasterio.open(tmp_path / "h-heat.tif") as heat:  # the tiles with heat it holds
        blocks = heat.read(1).reshape(heat.height // 256, 256, heat.width // 256, 256)
    assert report["tiles"] == int((blocks > 0).any(axis=(1, 3)).sum()) >= 1
    lon_min, lat_min, lon_max, lat_max = report["bounds"]
    assert lon_min < 14.50 < 14.503 < lon_max and lat_min < 46.05 < 46.053 < lat_max
    assert str(tmp_path / "h.png") in report["outputs"]
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("geoheat: 3 files read, 1 skipped, 1 duplicate dropped;")


def test_basemap_deadline_and_tile_timeout_reach_the_build(tmp_path, tracks, monkeypatch):
    from geoheat import basemap

    seen = {}
    real = basemap.fetch_basemap

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(basemap, "fetch_basemap", spy)
    result = run(tracks, "-o", tmp_path / "h.png", "--zoom", "14", "--basemap",
                 "http://127.0.0.1:9/{z}/{x}/{y}.png", "--tile-timeout", "2",
                 "--basemap-deadline", "5")
    assert result.exit_code == 0, result.stderr
    assert (seen["timeout"], seen["deadline"]) == (2.0, 5.0)
    bad = run(tracks, "-o", tmp_path / "h.png", "--basemap-deadline", "0")
    assert "basemap deadline must be > 0 seconds" in error_line(bad)


@pytest.mark.parametrize("size", ["nan", "inf", "1e999", "-inf", "1e30"])
@pytest.mark.parametrize("command", ["build", "serve"])
def test_a_max_file_size_that_is_no_size_is_refused_in_one_line(tmp_path, tracks, size,
                                                                 command):
    # nan, inf and 1e999 were ValueError/OverflowError tracebacks.
    args = [command, str(tracks), "--max-file-size", size, "--no-cache"]
    if command == "build":
        args += ["-o", str(tmp_path / "h.png"), "--basemap", "none"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"geoheat: error: --max-file-size: not a size such as 512M or 2G: {size!r}")
    assert not list(tmp_path.glob("h*"))


def test_site_with_a_scheduler_is_refused_before_any_work(tmp_path):
    """The site is made on this machine from the inputs: with --scheduler (inputs the
    workers read, maybe not this machine) it failed only after the whole cluster build."""
    result = CliRunner().invoke(cli, ["build", str(tmp_path), "-o", str(tmp_path / "h.png"),
                                      "--site", str(tmp_path / "site"), "--scheduler",
                                      "local:2"])
    assert result.exit_code == 2
    assert "--site is made on this machine: leave out --scheduler" in result.stderr
    assert not (tmp_path / "site").exists() and not (tmp_path / "h.png").exists()
