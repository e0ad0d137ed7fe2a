"""The output set: one build at a time, committed as one, finished after a crash."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import rasterio

import geoheat
from geoheat import outputs, pipeline, writers
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


def contents(folder):
    """Every file under folder, by its path there: its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


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
    workers = []
    while not workers and time.monotonic() < deadline:  # its parse workers are running
        workers = subprocess.run(["pgrep", "-P", str(build.pid)], capture_output=True,
                                 text=True).stdout.split()
        time.sleep(0.02)
    assert workers, "the build started no parse workers to check"
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


# The record proves what geoheat made: nothing else is removed or written through.

def test_a_rebuild_from_another_folder_removes_only_its_own_files(tmp_path, rides,
                                                                  monkeypatch):
    (tmp_path / "a" / "out").mkdir(parents=True)
    (tmp_path / "other" / "out").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    geoheat.build([rides], "out/h.tif", zoom=15, csv=True)
    for name in ("h.csv", "h.tif"):  # the user's own files, in another folder
        (tmp_path / "other" / "out" / name).write_text("mine")
    monkeypatch.chdir(tmp_path / "other")
    geoheat.build([rides], "../a/out/h.tif", zoom=15)  # the same set, without the CSV
    assert listing(tmp_path / "other" / "out") == ["h.csv", "h.tif"]
    assert (tmp_path / "other" / "out" / "h.csv").read_text() == "mine"
    assert listing(tmp_path / "a" / "out") == [".h.geoheat-lock", "h.qml", "h.tif"]  # CSV gone


def test_a_copied_folder_never_touches_the_original(tmp_path, rides):
    maps = tmp_path / "maps"
    maps.mkdir()
    geoheat.build([rides], maps / "h.tif", zoom=15, csv=True)
    before = {name: (maps / name).read_bytes() for name in listing(maps)}
    copy = tmp_path / "maps-copy"
    shutil.copytree(maps, copy, symlinks=True)  # cp -a
    warnings = []
    geoheat.build([rides], copy / "h.tif", zoom=15, on_warning=warnings.append)
    assert {name: (maps / name).read_bytes() for name in listing(maps)} == before
    # The copy's stale CSV cannot be proved the build's own: left, and said.
    assert {"h.csv", "h.csvt"} <= set(listing(copy))
    assert warnings == [f"{copy / 'h.tif'}: the record of the previous set was made in "
                        "another folder (a copy of it?); its files this build does not make "
                        "are left in place: h.csv, h.csvt"]
    # From then on the copy's record is its own.
    geoheat.build([rides], copy / "h.tif", zoom=15, csv=True)
    geoheat.build([rides], copy / "h.tif", zoom=15, on_warning=warnings.append)
    assert len(warnings) == 1 and "h.csv" not in listing(copy)


def test_an_output_shared_with_another_set_is_not_removed(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    geoheat.build([rides], out / "a.tif", zoom=15, mbtiles=out / "shared.mbtiles")
    geoheat.build([rides], out / "b.tif", zoom=15, mbtiles=out / "shared.mbtiles")
    newest = (out / "shared.mbtiles").read_bytes()
    warnings = []
    geoheat.build([rides], out / "a.tif", zoom=15, on_warning=warnings.append)
    assert (out / "shared.mbtiles").read_bytes() == newest  # b's newest output
    assert len(warnings) == 1 and "shared.mbtiles: left in place" in warnings[0]


def test_an_output_another_set_lists_is_kept_even_if_this_set_wrote_it(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    geoheat.build([rides], out / "b.tif", zoom=15, mbtiles=out / "shared.mbtiles")
    geoheat.build([rides], out / "a.tif", zoom=15, mbtiles=out / "shared.mbtiles")
    warnings = []
    geoheat.build([rides], out / "a.tif", zoom=15, on_warning=warnings.append)
    assert (out / "shared.mbtiles").exists()  # b's record still lists it
    assert warnings == [f"{out / 'shared.mbtiles'}: left in place: another set's record "
                        "(.b.geoheat-lock) lists it"]


def test_a_file_replaced_since_the_build_is_left_and_said(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    build(rides, out, csv=True, counts=True)
    (out / "h.csv").unlink()
    (out / "h.csv").write_text("the user's own now")
    (tmp_path / "precious.tif").write_text("keep")
    (out / "h-counts.tif").unlink()
    (out / "h-counts.tif").symlink_to(tmp_path / "precious.tif")
    warnings = []
    build(rides, out, on_warning=warnings.append)
    assert (out / "h.csv").read_text() == "the user's own now"
    assert (out / "h-counts.tif").is_symlink() and (tmp_path / "precious.tif").read_text() == "keep"
    assert not (out / "h.csvt").exists()  # unchanged since the build wrote it: removed
    assert sorted(warnings) == [
        f"{out / name}: left in place: no longer the file geoheat wrote for h.png "
        "(changed or replaced since)" for name in ("h-counts.tif", "h.csv")]


def test_an_older_record_removes_nothing(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    (out / "h.csv").write_text("listed by an older geoheat, as typed")
    (out / ".h.geoheat-lock").write_text(json.dumps({"outputs": [str(out / "h.csv")]}))
    warnings = []
    build(rides, out, on_warning=warnings.append)
    assert (out / "h.csv").exists()
    assert warnings == [f"{out / 'h.png'}: the record of the previous set is an older "
                        "geoheat's; its files this build does not make are left in place: h.csv"]


@pytest.mark.parametrize("dangling", [False, True])
def test_a_lock_file_that_is_a_link_is_not_followed(tmp_path, rides, dangling):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious.txt"
    if not dangling:
        target.write_text("precious")
    (out / ".h.geoheat-lock").symlink_to(target)
    with pytest.raises(OutputError, match=r"\.h\.geoheat-lock \(geoheat's lock and record of "
                                          r"this set\) is a link; geoheat does not write "
                                          "through it"):
        build(rides, out)
    assert (target.read_text() == "precious") if not dangling else not target.exists()
    assert listing(out) == [".h.geoheat-lock"] and (out / ".h.geoheat-lock").is_symlink()


def test_the_staging_of_a_set_named_like_this_one_is_not_touched(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    other = out / ".geoheat-stage.h.x.abcd1234"  # set h.x.png's, in the middle of its build
    other.mkdir()
    (other / "h.x.png").write_bytes(b"being written")
    build(rides, out)
    assert (other / "h.x.png").read_bytes() == b"being written"


def test_a_copied_unfinished_commit_is_not_finished_into_the_original(tmp_path, rides,
                                                                      monkeypatch):
    maps = tmp_path / "maps"
    maps.mkdir()
    geoheat.build([rides], maps / "h.tif", zoom=15, csv=True, sigma=0)
    real_replace, moved = os.replace, []

    def killed_after_one(source, target):
        if len(moved) == 1:
            raise KeyboardInterrupt
        moved.append(target)
        real_replace(source, target)

    monkeypatch.setattr(outputs.os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        geoheat.build([rides], maps / "h.tif", zoom=15, sigma=3)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    copy = tmp_path / "maps-copy"
    shutil.copytree(maps, copy, symlinks=True)
    before = contents(maps)
    warnings = []
    geoheat.build([rides], copy / "h.tif", zoom=15, on_warning=warnings.append)
    assert contents(maps) == before
    assert any("an unfinished commit" in line and "left undone" in line for line in warnings)
    assert not [n for n in listing(copy) if n.startswith(".geoheat-stage")]


# Names and folders

def test_output_names_as_long_as_the_file_system_allows(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    longest = "x" * 251 + ".tif"  # 255 bytes: geoheat's own names must not add to it
    geoheat.build([rides], out / longest, zoom=15, mbtiles=out / "h.mbtiles")
    assert listing(out)[-2:] == ["x" * 251 + ".qml", longest]
    with pytest.raises(OutputError, match=r"y\.tif: name too long: 256 bytes, this file "
                                          "system allows 255"):
        geoheat.build([rides], out / ("y" * 252 + ".tif"), zoom=15)
    with pytest.raises(OutputError, match=r"z\.png: name too long \(with z+\.png\.aux\.xml "
                                          r"beside it\): 258 bytes"):
        geoheat.build([rides], out / ("z" * 246 + ".png"), zoom=15)
    # A second build of the longest name replaces its set, by the same lock.
    geoheat.build([rides], out / longest, zoom=15)
    assert not [n for n in listing(out) if "mbtiles" in n or "geoheat-stage" in n]


def test_a_folder_removed_during_the_build_is_one_line(tmp_path, rides, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = writers.write_qml

    def written_then_folder_gone(*args, **kwargs):
        real(*args, **kwargs)
        shutil.rmtree(out)

    monkeypatch.setattr(writers, "write_qml", written_then_folder_gone)
    with pytest.raises(OutputError) as caught:
        build(rides, out)
    assert str(caught.value) == f"{out / 'h-heat.tif'}: cannot write (its folder {out} was removed)"


# --site: checked before anything is written, written before the set is committed

def cli_build(*args):
    from click.testing import CliRunner

    from geoheat.cli import cli

    return CliRunner().invoke(cli, ["build", *map(str, args), "--zoom", "13", "--basemap",
                                    "none", "--no-cache", "-j", "1", "-q"])


@pytest.mark.parametrize("site", [".", "../here"])
def test_a_site_in_the_current_folder_is_refused_before_anything_is_written(
        tmp_path, rides, monkeypatch, site):
    (tmp_path / "here").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    result = cli_build(rides, "-o", tmp_path / "out" / "h.tif", "--site", site)
    assert result.exit_code == 2
    assert result.stderr == (f"geoheat: error: {site}: is the current folder or holds it, and "
                             "would be replaced as a whole: name a folder of its own (e.g. "
                             "site)\n")
    assert listing(tmp_path / "here") == [] and listing(tmp_path / "out") == []
    assert listing(tmp_path) == ["here", "in", "out"]


def test_a_site_that_cannot_be_written_leaves_the_previous_set(tmp_path, rides, monkeypatch):
    from geoheat import staticsite

    out = tmp_path / "out"
    out.mkdir()
    assert cli_build(rides, "-o", out / "h.png", "--csv").exit_code == 0
    before = contents(out)

    def full_disk(meta):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(staticsite, "page", full_disk)
    result = cli_build(rides, "-o", out / "h.png", "--sigma", "3", "--site", tmp_path / "site")
    assert result.exit_code == 2
    assert result.stderr == (f"geoheat: error: {tmp_path / 'site'}: cannot write the site: "
                             "No space left on device\n")
    assert contents(out) == before  # the previous set, as it was
    assert listing(tmp_path) == ["in", "out"]


def test_an_output_that_is_a_link_is_replaced_not_written_through(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious.tif"
    precious.write_text("keep")
    (out / "h-heat.tif").symlink_to(precious)
    build(rides, out)
    assert precious.read_text() == "keep"
    assert not (out / "h-heat.tif").is_symlink()
    with rasterio.open(out / "h-heat.tif") as tif:
        assert tif.crs.to_epsg() == 3857


def test_a_lock_file_with_other_names_is_not_written_through(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    build(rides, out, csv=True)
    snapshot = tmp_path / "snapshot"  # cp -al, rsync --link-dest: the same inodes
    snapshot.mkdir()
    for name in listing(out):
        os.link(out / name, snapshot / name)
    before = contents(snapshot)
    build(rides, out, sigma=3)
    assert contents(snapshot) == before  # the snapshot's record too
    assert os.stat(out / ".h.geoheat-lock").st_nlink == 1
    assert "h.csv" not in listing(out)  # the record was read, and the set replaced
    record = json.loads((out / ".h.geoheat-lock").read_text())
    assert sorted(e["path"] for e in record["outputs"]) == [
        "h-heat.qml", "h-heat.tif", "h.pgw", "h.png", "h.png.aux.xml"]


def test_a_site_named_like_an_output_is_refused_before_any_work(tmp_path, rides):
    out = tmp_path / "out"
    out.mkdir()
    result = cli_build(rides, "-o", out / "h.png", "--csv", "--site", out / "h.csv")
    assert result.exit_code == 2
    assert result.stderr == (f"geoheat: error: {out / 'h.csv'}: is also an output of this "
                             "build; name another folder for the site\n")
    assert listing(out) == []


def test_every_destination_is_checked_before_the_inputs_are_read(tmp_path):
    out = tmp_path / "out"
    (out / "h.csv").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match=r"h\.csv: cannot write \(a folder is in the way\)"):
        geoheat.build([tmp_path / "empty"], out / "h.png", csv=True)  # not "no files"
    assert listing(out) == ["h.csv"]
