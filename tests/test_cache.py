"""The parse cache never serves bad data, and never stops a build (issue 11)."""

import contextlib
import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import geoheat
from geoheat import cache, reading

from .conftest import straight

LON, LAT = 14.50123, 46.05012


@pytest.fixture
def ride(tmp_path, write_gpx):
    """One GPX file of two segments, in a folder of its own."""
    first = [(LON + 0.001 * i, LAT + 0.0005 * i) for i in range(40)]
    second = [(LON - 0.001 * i, LAT + 0.0007 * i) for i in range(25)]
    return write_gpx("ride.gpx", first, second, folder=tmp_path / "tracks")


@pytest.fixture
def parses(monkeypatch):
    """The files actually parsed (not served from the cache), in order."""
    calls = []
    real = reading.parse_file

    def parse_file(source, *args):
        calls.append(Path(getattr(source, "path", source)))  # a Source or a path
        return real(source, *args)

    monkeypatch.setattr(reading, "parse_file", parse_file)
    return calls


def cached(store: Path, path: Path) -> Path:
    """The cache entry of a file (there is exactly one)."""
    entries = list(store.rglob("*.bin"))
    assert len(entries) == 1 and cache.load(store, path) is not None
    return entries[0]


def assert_same(a: cache.ParsedFile, b: cache.ParsedFile):
    assert np.array_equal(a.xy, b.xy) and np.array_equal(a.offsets, b.offsets)
    assert (a.start, a.error, a.format, a.size) == (b.start, b.error, b.format, b.size)


def test_an_entry_round_trips(tmp_path, ride):
    store = tmp_path / "cache"
    parsed = reading.parse_file(ride)
    cache.store(store, ride, parsed)
    assert_same(cache.load(store, ride), parsed)
    # A new layout or meaning (7: a checksum for the header alone; 8: times only where
    # a gap may need them; 9: the file's size; 10: FIT files read anew: unfinished ones,
    # damaged ones, multisport and virtual types): entries of older geoheats are not used.
    assert cache.CACHE_FORMAT == 10


def test_a_flipped_bit_anywhere_in_an_entry_means_reading_the_file_again(
        tmp_path, ride, parses):
    store = tmp_path / "cache"
    truth = reading.read_files([ride], store)[0]
    entry = cached(store, ride)
    pristine = entry.read_bytes()
    # The last byte is the top of the last latitude's float64: sign and exponent, so a
    # flip there moves the point across the world (or makes it inf/NaN).
    header_end = pristine.index(b"\n", pristine.index(b"\n", len(b"geoheat-parsed\n")) + 1)
    for where in (20, header_end - 5, header_end + 3, len(pristine) - 300, len(pristine) - 1):
        for bit in (0x01, 0x40):
            damaged = bytearray(pristine)
            damaged[where] ^= bit
            entry.write_bytes(bytes(damaged))
            assert cache.load(store, ride) is None, (where, bit)
            parses.clear()
            again = reading.read_files([ride], store)[0]
            assert parses == [ride]  # from the file, not the damaged entry
            assert_same(again, truth)
            assert entry.read_bytes() == pristine  # and the entry rewritten whole


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_a_non_finite_point_in_an_entry_means_reading_the_file_again(
        tmp_path, ride, parses, poison):
    # An entry whose checksum is right but whose points are not (a faulty writer):
    # NaN here once made every later run fail until the cache was cleared.
    store = tmp_path / "cache"
    truth = reading.read_files([ride], store)[0]
    entry = cached(store, ride)
    data = bytearray(entry.read_bytes())
    data[-16:-8] = np.array([poison], dtype="<f8").tobytes()  # the last point's x
    # The body's checksum (the second on its line) made right again.
    checksums_end = len(b"geoheat-parsed\n") + 4 * cache._CHECKSUM_SIZE
    body_start = data.index(b"\n", checksums_end + 1) + 1
    data[checksums_end - 2 * cache._CHECKSUM_SIZE:checksums_end] = cache.checksum(
        memoryview(data)[body_start:])
    entry.write_bytes(bytes(data))
    assert cache.load(store, ride) is None
    parses.clear()
    geoheat.build([ride.parent], tmp_path / "h.png", zoom=14, parse_cache=store)
    assert parses == [ride]
    assert_same(cache.load(store, ride), truth)


def test_a_parse_with_a_non_finite_point_is_not_stored(tmp_path, ride):
    parsed = reading.parse_file(ride)
    xy = parsed.xy.copy()
    xy[3, 1] = np.nan
    cache.store(tmp_path / "cache", ride, parsed._replace(xy=xy))
    assert cache.load(tmp_path / "cache", ride) is None
    assert not list((tmp_path / "cache").rglob("*.bin"))


def test_an_edit_with_size_and_mtime_put_back_is_read_again(tmp_path, ride, parses):
    store = tmp_path / "cache"
    before = reading.read_files([ride], store)[0]
    cached(store, ride)
    old = ride.stat()
    text = ride.read_text()
    edited = text.replace(f'lat="{LAT:.6f}"', f'lat="{LAT + 0.5:.6f}"')  # same length
    assert edited != text and len(edited) == len(text)
    with open(ride, "r+") as f:  # in place: the same inode
        f.write(edited)
    os.utime(ride, ns=(old.st_atime_ns, old.st_mtime_ns))  # what `touch -d` does
    new = ride.stat()
    assert (new.st_size, new.st_mtime_ns, new.st_ino) == (old.st_size, old.st_mtime_ns,
                                                          old.st_ino)
    assert cache.load(store, ride) is None  # ctime moved: no one can put it back
    parses.clear()
    after = reading.read_files([ride], store)[0]
    assert parses == [ride]
    assert after.xy[0, 1] > before.xy[0, 1]  # the edit counts: the first point moved north


def test_a_file_replaced_by_another_with_the_same_size_and_mtime_is_read_again(
        tmp_path, ride, parses):
    store = tmp_path / "cache"
    before = reading.read_files([ride], store)[0]
    old = ride.stat()
    other = ride.with_name("other.tmp")
    other.write_text(ride.read_text().replace(f'lon="{LON:.6f}"', f'lon="{LON + 0.5:.6f}"'))
    os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(other, ride)  # a new inode, as an editor that saves by renaming leaves
    assert (ride.stat().st_size, ride.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert cache.load(store, ride) is None
    parses.clear()
    after = reading.read_files([ride], store)[0]
    assert parses == [ride]
    assert after.xy[0, 0] > before.xy[0, 0]  # the new file's first point, further east


def unwritable(kind: str, store: Path, monkeypatch):
    """Make the parse cache folder unwritable in one of the ways seen in the wild."""
    if kind == "a file in the way":
        store.write_text("not a folder")
    elif kind == "a file under it":
        store.mkdir()
        (store / "parsed").write_text("not a folder")
        (store / "counts").write_text("not a folder")  # the counts cache's (countcache.py)
        (store / "outputs").write_text("not a folder")  # the output cache's (outputcache.py)
    elif kind == "disk full":  # every write meets a real ENOSPC, from /dev/full
        if not Path("/dev/full").exists():
            pytest.skip("needs /dev/full")
        real_mkstemp = tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            fd, name = real_mkstemp(*args, **kwargs)
            os.close(fd)
            return os.open("/dev/full", os.O_WRONLY), name

        monkeypatch.setattr(cache, "tempfile", SimpleNamespace(mkstemp=mkstemp))

        def create(path, flags, mode=0o777):  # a small entry, written in place
            fd = os.open(path, flags, mode)
            os.close(fd)
            return os.open("/dev/full", os.O_WRONLY)
    else:  # read-only: root ignores chmod, so the file system says EROFS
        def mkstemp(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(cache, "tempfile", SimpleNamespace(mkstemp=mkstemp))

        def create(path, flags, mode=0o777):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    if kind in ("disk full", "read-only"):  # also for entries created in place (os.open)
        def open_(path, flags, mode=0o777):
            return (create if flags & os.O_CREAT else os.open)(path, flags, mode)

        monkeypatch.setattr(cache, "os", SimpleNamespace(**{**vars(os), "open": open_}))


@pytest.mark.parametrize("kind", ["a file in the way", "a file under it", "disk full",
                                  "read-only"])
def test_an_unwritable_parse_cache_means_building_without_one(
        tmp_path, ride, parses, monkeypatch, kind):
    store = tmp_path / "cache"
    unwritable(kind, store, monkeypatch)
    warnings = []
    for output in ("a.png", "b.png"):
        result = geoheat.build([ride.parent], tmp_path / output, zoom=14, parse_cache=store,
                               on_warning=warnings.append)
        assert result.files_read == 1 and result.points_used == 65
    assert parses == [ride, ride]  # nothing cached, so read each time
    assert warnings == []
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.tmp"))
    assert (tmp_path / "a-heat.tif").read_bytes() == (tmp_path / "b-heat.tif").read_bytes()


def test_an_unwritable_parse_cache_through_the_cli_in_two_processes(tmp_path, write_gpx):
    folder = tmp_path / "tracks"
    for i in range(3):
        write_gpx(f"r{i}.gpx", [(LON + 0.001 * j, LAT + 0.001 * i) for j in range(30)],
                  folder=folder)
    (tmp_path / "cache").write_text("not a folder")
    run = subprocess.run([sys.executable, "-m", "geoheat", "build", str(folder), "--jobs", "2",
                          "--basemap", "none", "--cache", str(tmp_path / "cache"), "-o",
                          str(tmp_path / "h.png")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("geoheat: 3 files read")


def test_point_times_and_the_time_note_round_trip(tmp_path):
    import numpy as np

    from geoheat import cache

    source = tmp_path / "a.gpx"
    source.write_text("<gpx/>")
    xy = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    times = np.array([1.7e9, np.nan, 1.7e9 + 2])
    from geoheat.summary import summarize

    parsed = cache.ParsedFile("a.gpx", xy, np.array([0, 3]), None, times=times,
                              time_note="time 7494-01-01 is implausible",
                              summary=summarize(xy, np.array([0, 3])))
    cache.store(tmp_path / "c", source, parsed)
    back = cache.load(tmp_path / "c", source)
    np.testing.assert_array_equal(back.times, times)
    assert back.time_note == parsed.time_note
    untimed = parsed._replace(times=None, time_note=None)
    cache.store(tmp_path / "c", source, untimed)
    assert cache.load(tmp_path / "c", source).times is None


def test_the_least_recently_used_entries_go_when_the_cache_outgrows_its_limit(
        tmp_path, write_gpx, monkeypatch):
    # An export downloaded again is new files (new inodes): the old entries would stay
    # for ever. A build that adds entries removes the least recently used beyond the
    # limit, never its own.
    old = [write_gpx(f"old{i}.gpx", straight(14.50, 46.05 + i * 0.01, 14.52, 46.06),
                     folder=tmp_path / "old") for i in range(4)]
    new = [write_gpx(f"new{i}.gpx", straight(14.50, 46.05 + i * 0.01, 14.52, 46.07),
                     folder=tmp_path / "new") for i in range(2)]
    store = tmp_path / "cache"
    reading.read_files(old, store)
    entries = {p: cache.entry_path(store, cache.identity(p)) for p in old}
    size = entries[old[0]].stat().st_size
    for age, path in enumerate(old):  # old3 used longest ago, old0 most recently
        stat = entries[path].stat()
        os.utime(entries[path], ns=(stat.st_atime_ns - (age + 1) * 10**12, stat.st_mtime_ns))
    monkeypatch.setattr(cache, "MAX_CACHE_BYTES", int(4.5 * size))
    reading.read_files(new + old[:1], store)  # two new entries: six, 4.5 fit
    assert [entries[p].exists() for p in old] == [True, True, False, False]
    assert all(cache.load(store, p) is not None for p in new)
    # A build over the limit with its own entries alone keeps them all.
    monkeypatch.setattr(cache, "MAX_CACHE_BYTES", 1)
    assert cache.prune(store, keep=new + old[:2]) == 0
    assert cache.prune(store, keep=new) == 2
    # A warm build adds nothing, and removes nothing.
    monkeypatch.setattr(cache, "prune", lambda *args, **kwargs: pytest.fail("pruned"))
    reading.read_files(new, store)


def in_thread(call, fifos=()):
    """call()'s result, or "hung" when it has not returned in 60 s: then a writer is
    opened on each FIFO (a reader stuck opening one goes on to read nothing)."""
    import threading

    box = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(60)
    if not thread.is_alive():
        return box[0]
    for fifo in fifos:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    return "hung"


@pytest.mark.parametrize("kind", ["fifo", "link"])
def test_cache_entries_that_are_no_regular_files_are_no_entries(tmp_path, ride, kind):
    """A FIFO as an entry held the build forever (the open waits for a writer); a link
    was followed (one to /dev/zero read without end). Neither is an entry geoheat wrote:
    the files are read and counted again, and the entries written again as files."""
    store = tmp_path / "cache"
    first = geoheat.build([ride.parent], tmp_path / "a.png", zoom=15, parse_cache=store)
    entries = sorted(store.rglob("*.bin"))
    assert {p.relative_to(store).parts[0] for p in entries} == {"parsed", "counts", "outputs"}
    aside = tmp_path / "aside"
    aside.mkdir()
    for i, entry in enumerate(entries):
        entry.rename(aside / f"{i}.bin")
        if kind == "fifo":
            os.mkfifo(entry)
        else:  # a link to the very entry geoheat wrote: still not one it made there
            entry.symlink_to(aside / f"{i}.bin")
    kept = {p: p.read_bytes() for p in aside.iterdir()}
    again = in_thread(lambda: geoheat.build([ride.parent], tmp_path / "b.png", zoom=15,
                                            parse_cache=store), entries)
    assert again != "hung"
    assert not again.counts_cached and again.points_used == first.points_used
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert all(p.is_file() and not p.is_symlink() for p in entries)
    assert {p: p.read_bytes() for p in aside.iterdir()} == kept  # links' targets untouched


@pytest.mark.parametrize("kind", ["fifo", "link"])
@pytest.mark.parametrize("which", ["tile", "side file"])
def test_a_basemap_tile_cache_entry_that_is_no_regular_file_is_no_entry(tmp_path, kind,
                                                                         which):
    from geoheat import basemapcache

    path = tmp_path / "tiles" / "osm" / "15" / "1" / "2.tile"
    basemapcache.store_cache(path, b"\x89PNG\r\n\x1a\n" + bytes(100), {"expires": 1e12})
    assert basemapcache.read_cache(path) is not None
    entry = path if which == "tile" else path.with_suffix(".json")
    entry.rename(tmp_path / "aside")
    if kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to(tmp_path / "aside")
    assert in_thread(lambda: basemapcache.read_cache(path), [entry]) is None


@pytest.mark.parametrize("cut", [1, 40, 0.5, -1])
def test_a_small_entry_written_in_place_and_cut_short_is_read_again_and_replaced(
        tmp_path, ride, parses, cut):
    # Small entries are created in place (no temporary name and rename: half the cost for
    # many tiny files): one left half-written (a crash, or a build still writing it) is
    # refused by its checks, and the next build replaces it whole.
    store = tmp_path / "cache"
    first = reading.read_files([ride], store)[0]
    path = cache.entry_path(store, cache.identity(ride))
    whole = path.read_bytes()
    assert len(whole) <= cache.IN_PLACE_BYTES and not list(path.parent.glob("*.tmp"))
    path.write_bytes(whole[:int(len(whole) * cut) if isinstance(cut, float) else cut])
    assert cache.load(store, ride) is None
    parses.clear()
    again = reading.read_files([ride], store)[0]
    assert parses == [ride] and path.read_bytes() == whole
    assert np.array_equal(again.xy, first.xy)
    assert np.array_equal(cache.load(store, ride).xy, first.xy)
