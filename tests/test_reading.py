"""Reading many files: through the parse cache, in parallel processes, bit for bit the same."""

import os
import subprocess
import sys

import pytest

import geoheat
from geoheat import cache, reading

from .conftest import straight


@pytest.fixture
def rides(tmp_path, write_gpx):
    folder = tmp_path / "in"
    for i in range(6):
        write_gpx(f"r{i}.gpx", straight(14.50 + i * 0.002, 46.05, 14.52, 46.06 + i * 0.001),
                  folder=folder)
    return folder


def tif_bytes(path):
    return path.with_name(f"{path.stem}-heat.tif").read_bytes()


def test_cached_and_uncached_builds_are_identical(tmp_path, rides, monkeypatch):
    calls = []
    real = reading.parse_file
    monkeypatch.setattr(reading, "parse_file", lambda path, *args: calls.append(path) or real(path, *args))
    store = tmp_path / "cache"
    geoheat.build([rides], tmp_path / "a.png", zoom=15)
    geoheat.build([rides], tmp_path / "b.png", zoom=15, parse_cache=store)
    assert len(calls) == 12
    geoheat.build([rides], tmp_path / "c.png", zoom=15, parse_cache=store)
    assert len(calls) == 12  # all from the cache
    assert tif_bytes(tmp_path / "a.png") == tif_bytes(tmp_path / "b.png") == tif_bytes(
        tmp_path / "c.png")


def test_a_changed_file_is_read_again(tmp_path, rides, write_gpx):
    store = tmp_path / "cache"
    before = geoheat.build([rides], tmp_path / "a.png", zoom=15, parse_cache=store)
    write_gpx("r0.gpx", straight(14.50, 46.05, 14.53, 46.07, step_m=20), folder=rides)
    after = geoheat.build([rides], tmp_path / "a.png", zoom=15, parse_cache=store)
    assert after.points_used > before.points_used
    # Same bytes, new modification time: read again (size and mtime are the key).
    path = rides / "r1.gpx"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.load(store, path) is None


def test_a_corrupt_cache_entry_is_ignored_and_rewritten(tmp_path, rides):
    store = tmp_path / "cache"
    geoheat.build([rides], tmp_path / "a.png", zoom=15, parse_cache=store)
    entries = sorted(store.glob("parsed/*/*.bin"))
    assert len(entries) == 6
    entries[0].write_bytes(b"garbage")
    entries[1].write_bytes(entries[1].read_bytes()[:100])  # cut short
    geoheat.build([rides], tmp_path / "b.png", zoom=15, parse_cache=store)
    assert tif_bytes(tmp_path / "a.png") == tif_bytes(tmp_path / "b.png")
    assert all(cache.load(store, p) is not None for p in sorted(rides.glob("*.gpx")))


def test_unreadable_files_are_cached_as_skipped(tmp_path, rides):
    (rides / "bad.gpx").write_text("<gpx><trk>")
    store = tmp_path / "cache"
    first = geoheat.build([rides], tmp_path / "a.png", parse_cache=store)
    second = geoheat.build([rides], tmp_path / "a.png", parse_cache=store)
    assert first.skipped == second.skipped and len(second.skipped) == 1


def test_two_runs_at_once_share_a_cache(tmp_path, rides):
    store = tmp_path / "cache"
    runs = [subprocess.Popen([sys.executable, "-m", "geoheat", "build", str(rides), "-q",
                              "--basemap", "none", "--cache", str(store), "-o",
                              str(tmp_path / f"{name}.png")], stderr=subprocess.PIPE)
            for name in ("x", "y")]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    assert all(cache.load(store, p) is not None for p in sorted(rides.glob("*.gpx")))
    assert tif_bytes(tmp_path / "x.png") == tif_bytes(tmp_path / "y.png")


def test_jobs_2_equals_jobs_1_bit_for_bit(tmp_path, rides):
    one = geoheat.build([rides], tmp_path / "one.png", zoom=15, jobs=1, csv=True)
    two = geoheat.build([rides], tmp_path / "two.png", zoom=15, jobs=2, csv=True)
    assert one.points_used == two.points_used
    assert tif_bytes(tmp_path / "one.png") == tif_bytes(tmp_path / "two.png")
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()


def test_a_file_over_the_size_limit_is_not_cached_as_skipped(tmp_path, rides):
    store = tmp_path / "cache"
    with pytest.raises(geoheat.InputError, match="6 skipped"):
        geoheat.build([rides], tmp_path / "a.png", parse_cache=store, max_file_size=1000)
    again = geoheat.build([rides], tmp_path / "a.png", parse_cache=store)  # the default limit
    assert again.skipped == [] and again.files_read == 6
