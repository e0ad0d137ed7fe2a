"""Reading many files: through the parse cache, in parallel processes, bit for bit the same."""

import functools
import os
import subprocess
import sys
from pathlib import Path
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import geoheat
from geoheat import cache, reading
from geoheat.rasterize import split_gaps

from .conftest import shared_folder, straight
from .test_exports import tcx_document


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


def test_worker_processes_send_back_summaries_not_points(tmp_path, rides, monkeypatch):
    # With a cache, a worker stores the points and sends back the summary: 20M points
    # would otherwise cross the pipe (480 MB) only to be dropped on arrival.
    store = tmp_path / "cache"
    sent = []
    real = reading.parse_and_cache

    def spy(*args):
        parsed, stored = real(*args)
        sent.append((len(parsed.xy), parsed.points, stored))
        return parsed, stored

    monkeypatch.setattr(reading, "parse_and_cache", spy)
    monkeypatch.setattr(reading, "SMALL_POINTS", 30)  # these files are larger than "small"
    light = reading.read_files(sorted(rides.glob("*.gpx")), store, keep_points=False)
    assert len(sent) == 6 and all(xy == 0 and points > 30 and stored
                                  for xy, points, stored in sent)
    assert all(not p.loaded and p.summary for p in light)
    full = reading.read_files(sorted(rides.glob("*.gpx")), None)  # no cache: the points
    for mine, theirs in zip(light, full):
        loaded = reading.load_points(mine, reading.Source(Path(mine.name)), store)
        assert np.array_equal(loaded.xy, theirs.xy)
        assert loaded.summary.to_json() == theirs.summary.to_json()
    # Without a cache to keep them in, the points come back whole.
    assert all(p.loaded for p in reading.read_files(sorted(rides.glob("*.gpx")), None,
                                                    keep_points=False))
    monkeypatch.undo()  # a pool pickles the function by name
    two = geoheat.build([rides], tmp_path / "two.png", zoom=15, jobs=2, parse_cache=store / "2")
    one = geoheat.build([rides], tmp_path / "one.png", zoom=15, jobs=1)
    assert tif_bytes(tmp_path / "one.png") == tif_bytes(tmp_path / "two.png")
    assert two.points_used == one.points_used


def test_small_files_keep_their_points_up_to_a_budget_and_are_not_loaded_again(
        tmp_path, rides, monkeypatch):
    # Reloading a tiny file's points from its cache entry to count them cost more than
    # holding them: a cold build of many tiny files was slower than one with no cache.
    store = tmp_path / "cache"
    paths = sorted(rides.glob("*.gpx"))
    full = reading.read_files(paths, None)
    monkeypatch.setattr(reading, "KEPT_POINTS", sum(p.points for p in full[:4]))  # four of six
    light = reading.read_files(paths, store, keep_points=False)
    assert [p.loaded for p in light] == [True] * 4 + [False] * 2
    assert all(cache.load(store, path) is not None for path in paths)  # all cached
    loads = []
    real_load = cache.load
    monkeypatch.setattr(cache, "load", lambda *a, **k: loads.append(a[1]) or real_load(*a, **k))
    for mine, theirs, path in zip(light, full, paths):
        loaded = reading.load_points(mine, reading.Source(path), store)
        assert np.array_equal(loaded.xy, theirs.xy)
    assert [Path(source.path).name for source in loads] == [p.name for p in paths[4:]]
    # From the cache (headers only), the budget is not used: the points are loaded later.
    assert not any(p.loaded for p in reading.read_files(paths, store, keep_points=False))


def test_a_file_over_the_size_limit_is_not_cached_as_skipped(tmp_path, rides):
    store = tmp_path / "cache"
    with pytest.raises(geoheat.InputError, match="6 skipped"):
        geoheat.build([rides], tmp_path / "a.png", parse_cache=store, max_file_size=1000)
    again = geoheat.build([rides], tmp_path / "a.png", parse_cache=store)  # the default limit
    assert again.skipped == [] and again.files_read == 6


def test_the_size_limit_holds_for_files_in_the_cache(tmp_path, rides, write_gpx):
    # Kept under the default limit, refused under a lower one, as without a cache.
    big = write_gpx("big.gpx", straight(14.50, 46.05, 14.60, 46.10), folder=rides)
    limit = big.stat().st_size - 1
    assert all(p.stat().st_size <= limit for p in rides.glob("r*.gpx"))
    store = tmp_path / "cache"
    geoheat.build([rides], tmp_path / "a.png", parse_cache=store)
    assert cache.load(store, big).size == big.stat().st_size
    results = [geoheat.build([rides], tmp_path / f"{name}.png", parse_cache=where,
                             max_file_size=limit) for name, where in (("b", store), ("c", None))]
    for result in results:
        assert [(Path(name).name, "larger than" in why) for name, why in result.skipped] == [
            ("big.gpx", True)]
    assert tif_bytes(tmp_path / "b.png") == tif_bytes(tmp_path / "c.png")
    assert geoheat.build([rides], tmp_path / "d.png", parse_cache=store).skipped == []


T0 = datetime(2024, 5, 1, 8, tzinfo=timezone.utc)


def every(points, seconds=10.0, pause_at=None, pause=0.0):
    """A time for each point, `seconds` apart, with a pause before point pause_at."""
    return [T0 + timedelta(seconds=i * seconds + (pause if pause_at is not None and i >= pause_at
                                                  else 0)) for i in range(len(points))]


@pytest.fixture
def gappy(tmp_path, write_gpx):
    """Tracks whose times decide their gaps, and tracks whose times cannot; and whether
    each needs them."""
    folder = tmp_path / "gappy"
    first = straight(14.50, 46.05, 14.51, 46.05)
    later = straight(14.536, 46.05, 14.546, 46.05)  # 2 km on from the end of first
    paused = first + later
    jumped = first + straight(14.53, 46.05, 14.54, 46.05)
    thinned = straight(14.45, 46.03, 14.60, 46.10, step_m=600)
    steady = straight(14.50, 46.06, 14.52, 46.07)
    with_no_fix = steady[:20] + [(0.0, 0.0)] + steady[20:]
    needs = {
        # A real pause: 30 min, then on 2 km away (one segment): two lines.
        write_gpx("pause.gpx", paused, folder=folder,
                  times=[every(paused, pause_at=len(first), pause=1800)]): True,
        # A fast jump: 1.5 km in 10 s: broken only by its times.
        write_gpx("jump.gpx", jumped, folder=folder, times=[every(jumped)]): True,
        # 600 m steps, 90 s apart: times read (a step is long) but no break.
        write_gpx("thinned.gpx", thinned, folder=folder, times=[every(thinned, 90)]): True,
        # 50 m steps; two segments far apart; a point with no fix: no time matters.
        write_gpx("steady.gpx", steady, folder=folder, times=[every(steady)]): False,
        write_gpx("apart.gpx", steady, later, folder=folder,
                  times=[every(steady), every(later, pause_at=0, pause=9000)]): False,
        write_gpx("no-fix.gpx", with_no_fix, folder=folder, times=[every(with_no_fix)]): False,
    }
    tcx = folder / "jump.tcx"  # FIT and TCX readers give times anyway: kept only if needed
    tcx.write_text(tcx_document(jumped[:50] + jumped[-5:], T0))
    needs[tcx] = True
    tcx = folder / "steady.tcx"
    tcx.write_text(tcx_document(steady[:50], T0))
    needs[tcx] = False
    return folder, needs


def assert_same_gaps(lazy, full):
    """Two parses of one file: the same points, start and gaps."""
    assert lazy.xy.tobytes() == full.xy.tobytes()
    assert lazy.offsets.tolist() == full.offsets.tolist()
    assert (lazy.start, lazy.time_note, lazy.error, repr(lazy.summary)) == (
        full.start, full.time_note, full.error, repr(full.summary))
    gaps = split_gaps(lazy.xy, lazy.offsets, lazy.times)
    assert gaps.tolist() == split_gaps(full.xy, full.offsets, full.times).tolist()
    return gaps


def test_times_are_kept_only_where_a_gap_can_need_them(gappy):
    _, needs = gappy
    for path, needed in needs.items():
        lazy, full = reading.parse_file(path), reading.parse_file(path, all_times=True)
        assert full.times is not None and len(full.times) == len(full.xy)
        assert (lazy.times is not None) == needed, path.name
        if needed:  # read, and the same
            np.testing.assert_array_equal(lazy.times, full.times)
        gaps = assert_same_gaps(lazy, full)
        if path.stem in ("pause", "jump"):  # the times make a break the points alone do not
            assert len(gaps) == len(full.offsets) + 1 > len(split_gaps(full.xy, full.offsets))


def test_a_build_without_unneeded_times_is_the_same_bit_for_bit(tmp_path, gappy, monkeypatch):
    folder, _ = gappy
    store = tmp_path / "cache"
    # GeoTIFF outputs (the heat compared bit for bit): no PNG of the 12 km grid to encode.
    lazy = geoheat.build([folder], tmp_path / "lazy.tif", zoom=16, parse_cache=store, csv=True)
    monkeypatch.setattr(reading, "parse_file",
                        functools.partial(reading.parse_file, all_times=True))
    full = geoheat.build([folder], tmp_path / "full.tif", zoom=16, csv=True)
    assert lazy.points_used == full.points_used
    assert (tmp_path / "lazy.tif").read_bytes() == (tmp_path / "full.tif").read_bytes()
    assert (tmp_path / "lazy.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    # And from the parse cache, whose entries hold no times where none are needed.
    geoheat.build([folder], tmp_path / "warm.tif", zoom=16, parse_cache=store)
    assert (tmp_path / "warm.tif").read_bytes() == (tmp_path / "full.tif").read_bytes()
    assert cache.load(store, folder / "steady.gpx").times is None
    assert cache.load(store, folder / "pause.gpx").times is not None


@pytest.mark.parametrize("name", ["garmin-tree", "fit-tcx", "gpx-variety"])
def test_real_files_have_the_same_gaps_with_their_times_read_or_not(name):
    paths = sorted(p for p in shared_folder(name).rglob("*") if p.is_file())
    if name == "garmin-tree":
        paths = paths[::3]  # every kind, a third of the time
    for path in paths:
        assert_same_gaps(reading.parse_file(path), reading.parse_file(path, all_times=True))


def test_the_size_limit_holds_for_cached_failures_and_padded_files(tmp_path, write_gpx,
                                                                    monkeypatch):
    # An entry records the size its file was refused or read at: a damaged .gz read
    # under the default limit is refused as too large under a lower one, and a plain
    # file larger on disk than inside (gzip with padding) by its size on disk, as
    # without a cache.
    import gzip

    folder = tmp_path / "in"
    ride = write_gpx("ride.gpx", straight(14.50, 46.05, 14.60, 46.10), folder=folder)
    text = ride.read_bytes()
    damaged = bytearray(gzip.compress(text))
    damaged[-6] ^= 0xFF  # the CRC trailer
    (folder / "damaged.gpx.gz").write_bytes(bytes(damaged))
    (folder / "padded.gpx").write_bytes(gzip.compress(text) + bytes(len(text) * 3))
    limit = len(text) + 10  # over the ride, under the padded file on disk
    sources = sorted(folder.iterdir())
    store = tmp_path / "cache"
    reading.read_files(sources, store)  # the default limit: all kept in the cache
    cached = reading.read_files(sources, store, max_bytes=limit)
    uncached = reading.read_files(sources, None, max_bytes=limit)
    assert [(p.name, p.error) for p in cached] == [(p.name, p.error) for p in uncached]
    errors = {Path(p.name).name: p.error or "" for p in cached}
    assert "larger than" in errors["padded.gpx"]
    assert errors["ride.gpx"] == ""
    # A batch of a cluster build never prunes (it knows only its own files).
    monkeypatch.setattr(cache, "prune", lambda *args, **kwargs: pytest.fail("pruned"))
    reading.read_files([ride], tmp_path / "other", prune=False)


def test_an_interrupted_read_leaves_cancelling_to_the_pool():
    """pool.map's results cancelled their futures themselves on Ctrl-C while the pool's
    manager thread, seeing the workers stopped, marked the same futures broken: CPython
    3.11 raised InvalidStateError in that thread, its traceback after 'geoheat:
    interrupted' (test_serve's stuck-workers test, now and then). The read's own ordered
    map leaves every future to the pool's shutdown."""
    from concurrent.futures import Future

    class Pool:  # what was submitted; the first task is interrupted
        def __init__(self):
            self.futures = []

        def submit(self, call, *args):
            future = Future()
            if not self.futures:
                future.set_exception(KeyboardInterrupt())
            self.futures.append(future)
            return future

    pool = Pool()
    sources = [reading.Source(Path(f"{i}.gpx")) for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        list(reading._in_order(pool, sources, 3, None, 1000, False))
    assert len(pool.futures) == 4  # chunks of 3, 3, 3 and 1, all submitted
    assert not any(future.cancelled() for future in pool.futures[1:])


def test_ctrl_c_while_the_pool_starts_is_raised_after_it():
    """A Ctrl-C while the pool forked its workers landed in the fork's own handlers,
    which swallow it: the build went on and replaced the last outputs (the QGIS
    plugin's Cancel, now and then). It is held back until the workers are started."""
    import signal

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with reading._ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("the rest of the block")  # not cut short
    assert reached == ["the rest of the block"]
