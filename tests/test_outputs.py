"""The output set: one build at a time, committed as one, finished after a crash."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import rasterio

import geoheat
from geoheat import outputs, pipeline
from geoheat.errors import OutputError

RIDE = [(14.50 + i * 0.0005, 46.05 + i * 0.0002) for i in range(100)]


@pytest.fixture
def rides(tmp_path, write_gpx):
    write_gpx("a.gpx", RIDE, folder=tmp_path / "in")
    return tmp_path / "in"


def build(rides, out, **settings):
    return geoheat.build([rides], out / "h.png", zoom=15, **settings)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_second_build_of_the_same_set_stops_at_once(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(  # another process in the middle of a build of h.png
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from geoheat.outputs import OutputSet\n"
         f"p = Path({str(out / 'h.png')!r})\n"
         "with OutputSet([p], p):\n    print('holding', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(OutputError, match="another geoheat build is writing these outputs"):
            build(rides, out)
        geoheat.build([rides], out / "other.png", zoom=15)  # another set in the folder: fine
    finally:
        holder.kill()
        holder.wait()
    build(rides, out)  # and once the first is gone


def test_a_folder_in_the_way_changes_nothing(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    build(rides, out)
    before = {name: (out / name).read_bytes() for name in listing(out) if name.startswith("h")}
    (out / "h.csv").mkdir()  # in the way of the CSV this build adds
    with pytest.raises(OutputError, match=r"h\.csv: cannot write \(a folder is in the way\)"):
        build(rides, out, csv=True, sigma=3)
    assert {name: (out / name).read_bytes() for name in before} == before  # the old set
    assert not [n for n in listing(out) if n.startswith(".geoheat-stage")]


def test_a_crash_between_renames_is_finished_by_the_next_build(tmp_path, rides, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    build(rides, out, sigma=0)
    old_tif = (out / "h-heat.tif").read_bytes()
    real_replace, moved = os.replace, []

    def killed_after_two(source, target):
        if len(moved) == 2:
            raise KeyboardInterrupt  # the process dies here, in the middle of the commit
        moved.append(target)
        real_replace(source, target)

    monkeypatch.setattr(outputs.os, "replace", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build(rides, out, sigma=3)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    stage = [n for n in listing(out) if n.startswith(".geoheat-stage.h.")]
    assert len(stage) == 1 and (out / stage[0] / "journal.json").is_file()
    # The next build of the set, even one that fails, first finishes that commit.
    with pytest.raises(geoheat.InputError):
        geoheat.build([tmp_path / "in"], out / "h.png", years=[1999])
    assert not [n for n in listing(out) if n.startswith(".geoheat-stage")]
    assert (out / "h-heat.tif").read_bytes() != old_tif
    with rasterio.open(out / "h-heat.tif") as tif, rasterio.open(out / "h.png") as png:
        assert tif.tags()["SIGMA"] == "3.0"  # the whole set is the second build's
        assert png.width == tif.width


def test_stale_staging_from_killed_builds_is_removed(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".geoheat-stage.h.abc123"
    stale.mkdir()
    (stale / "h.tif").write_bytes(b"half a file")
    other = out / ".geoheat-stage.other.abc123"  # another set's: not ours to touch
    other.mkdir()
    build(rides, out)
    assert not stale.exists() and other.exists()


def test_outputs_this_build_does_not_make_are_removed_from_the_set(tmp_path, rides,
                                                                    monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    build(rides, out, csv=True, counts=True)
    assert {"h.png", "h.pgw", "h.csv", "h-counts.tif"} <= set(listing(out))
    (out / "notes.txt").write_text("mine")  # not geoheat's: kept
    monkeypatch.setattr(pipeline, "MAX_PNG_PIXELS", 1)  # this time no PNG can be made
    result = build(rides, out)
    names = set(listing(out))
    assert not names & {"h.png", "h.pgw", "h.png.aux.xml", "h.csv", "h-counts.tif"}
    assert {"h-heat.tif", "h-heat.qml", "notes.txt"} <= names
    record = json.loads((out / ".h.geoheat-lock").read_text())
    assert sorted(e["path"] for e in record["outputs"]) == sorted(p.name for p in result.outputs)
    for entry in record["outputs"]:  # each file as written: device, inode, size, time
        st = os.lstat(out / entry["path"])
        assert entry["file"] == [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def test_a_failed_build_leaves_no_file_at_all(tmp_path):
    with pytest.raises(geoheat.InputError):
        geoheat.build([tmp_path / "missing"], tmp_path / "h.png")
    assert listing(tmp_path) == []


def test_a_full_disk_is_one_line_naming_the_output(tmp_path, rides):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "geoheat", "build", str(rides), "--zoom", "17", "--sigma", "4",
             "--csv", "--basemap", "none", "--no-cache", "-o", str(small / "h.png")],
            capture_output=True, text=True, timeout=120)
        assert run.returncode == 2
        assert run.stderr.strip().splitlines() == [
            run.stderr.strip().splitlines()[0]]  # one line, nothing from GDAL or libtiff
        assert run.stderr.startswith(f"geoheat: error: {small}/h.")
        assert "cannot write (no space left on the device)" in run.stderr
        assert ".geoheat-stage" not in run.stderr and "Traceback" not in run.stderr
        assert listing(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_output_names_that_are_not_utf8_are_refused(tmp_path):
    name = os.fsdecode(b"\xff\xfe.png")
    with pytest.raises(OutputError, match="must be valid UTF-8"):
        geoheat.build([tmp_path], tmp_path / name)


def test_a_build_killed_with_sigkill_frees_its_outputs_and_its_workers(tmp_path, write_gpx):
    import signal
    import time

    folder = tmp_path / "in"
    for i in range(40):
        write_gpx(f"r{i}.gpx", [(14.5 + j * 1e-4, 46.05 + i * 1e-3) for j in range(3000)],
                  folder=folder)
    out = tmp_path / "out"
    out.mkdir()
    build = subprocess.Popen([sys.executable, "-m", "geoheat", "build", str(folder), "--jobs",
                              "2", "--no-cache", "--basemap", "none", "-q", "-o",
                              str(out / "h.png")])
    lock = out / ".h.geoheat-lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:  # it holds the set now
        time.sleep(0.02)
    time.sleep(0.5)  # its parse workers are running
    workers = subprocess.run(["pgrep", "-P", str(build.pid)], capture_output=True,
                             text=True).stdout.split()
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=30)
    # The next build of the set runs at once (the lock was the dead process's alone)...
    geoheat.build([folder], out / "h.png", zoom=12)
    assert (out / "h.png").exists()
    # ...and the dead build's workers ended with it.
    time.sleep(1)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")
             and "zombie" not in open(f"/proc/{pid}/status").read().lower()]
    assert alive == []
