"""The counts cache: a rebuild of the same activities on the same grids skips counting,
bit for bit the same, and any change to what the counts depend on counts again."""

import contextlib
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

import geoheat
from geoheat import countcache, counting, tiles
from geoheat.rasterize import TooBig

from .conftest import straight


@pytest.fixture
def rides(tmp_path, write_gpx):
    folder = tmp_path / "in"
    for i in range(5):
        write_gpx(f"r{i}.gpx", straight(14.50 + i * 0.003, 46.05, 14.53, 46.07 + i * 0.001),
                  folder=folder, start=datetime(2020 + i, 5, 1 + i, 8, tzinfo=timezone.utc))
    return folder


@pytest.fixture
def counted(monkeypatch):
    """The activities each build counted (loaded and drawn), in order."""
    calls = []
    real = counting.count_activity

    def spy(parsed, *args, **kwargs):
        calls.append(parsed.name)
        return real(parsed, *args, **kwargs)

    monkeypatch.setattr(counting, "count_activity", spy)
    return calls


def outputs(folder):
    """Every output file's bytes by name, tile archives as their tiles."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".mbtiles":
            with contextlib.closing(sqlite3.connect(path)) as db:
                found[path.name] = sorted(db.execute("SELECT * FROM tiles"))
        elif not path.name.startswith("."):
            found[path.name] = path.read_bytes()
    return found


def build(rides, out, store, **settings):
    out.mkdir(exist_ok=True)
    settings = {"zoom": 15, "sigma": 1.5, "mbtiles": out / "h.mbtiles", **settings}
    return geoheat.build([rides], out / "h.png", parse_cache=store, **settings)


def test_a_rebuild_with_other_looks_skips_counting_and_is_the_same_bit_for_bit(
        tmp_path, rides, counted):
    store = tmp_path / "cache"
    first = build(rides, tmp_path / "a", store)
    assert not first.counts_cached and len(counted) == 5
    assert list((store / "counts").glob("*.bin"))
    counted.clear()
    # Another sigma, colormap and scaling: the counts are the same, the looks are not.
    again = build(rides, tmp_path / "b", store, sigma=3, cmap="viridis", scaling="linear")
    assert again.counts_cached and counted == []
    fresh = build(rides, tmp_path / "c", None, sigma=3, cmap="viridis", scaling="linear")
    assert not fresh.counts_cached and len(counted) == 5
    assert outputs(tmp_path / "b") == outputs(tmp_path / "c")  # every level, every byte
    assert (again.points_used, again.points_outside, again.types, again.entries) == (
        fresh.points_used, fresh.points_outside, fresh.types, fresh.entries)


def test_the_report_says_where_the_counts_came_from(tmp_path, rides):
    store = tmp_path / "cache"
    for expected in (False, True):
        build(rides, tmp_path / "a", store, report=tmp_path / "r.json")
        assert json.loads((tmp_path / "r.json").read_text())["counts_from_cache"] is expected


@pytest.mark.parametrize("change", ["zoom", "bounds", "mode", "extent", "year", "edited file",
                                    "new file", "code"])
def test_whatever_the_counts_depend_on_counts_again(
        tmp_path, rides, write_gpx, counted, monkeypatch, change):
    store = tmp_path / "cache"
    build(rides, tmp_path / "a", store)
    settings = {}
    if change == "zoom":
        settings["zoom"] = 16  # above: its grid was not among the levels
    elif change == "bounds":
        settings["bounds"] = (46.04, 46.08, 14.49, 14.52)  # lat min, max, lon min, max
    elif change == "mode":
        settings["mode"] = "points"
    elif change == "extent":
        write_gpx("far.gpx", straight(15.9, 45.8, 15.95, 45.82), folder=rides)
        build(rides, tmp_path / "a", store)  # with the far ride left out of the auto extent
        settings["extent"] = "all"
    elif change == "year":
        settings["years"] = (2020, 2021, 2022, 2023)
    elif change == "edited file":
        write_gpx("r2.gpx", straight(14.51, 46.05, 14.53, 46.075), folder=rides)
    elif change == "new file":
        write_gpx("r9.gpx", straight(14.51, 46.06, 14.52, 46.07), folder=rides)
    else:  # a geoheat whose counting changed
        monkeypatch.setattr(countcache, "_code_digest", lambda: "another geoheat")
    counted.clear()
    result = build(rides, tmp_path / "b", store, **settings)
    assert not result.counts_cached and counted
    build(rides, tmp_path / "c", None, **settings)
    assert outputs(tmp_path / "b") == outputs(tmp_path / "c")
    assert build(rides, tmp_path / "b", store, **settings).counts_cached  # now kept


def test_a_damaged_entry_is_counted_again_and_rewritten(tmp_path, rides, counted):
    store = tmp_path / "cache"
    build(rides, tmp_path / "a", store)
    # The output grid's entry: the largest (the levels below hold fewer pixels).
    entry = max((store / "counts").glob("*.bin"), key=lambda p: p.stat().st_size)
    pristine = entry.read_bytes()
    for where in (3, 40, len(pristine) // 2, len(pristine) - 1):
        damaged = bytearray(pristine)
        damaged[where] ^= 0x10
        entry.write_bytes(bytes(damaged))
        counted.clear()
        result = build(rides, tmp_path / "b", store)
        assert not result.counts_cached and len(counted) == 5, where
        assert entry.read_bytes() == pristine
        assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    entry.write_bytes(pristine[:-7])  # cut short
    assert not build(rides, tmp_path / "b", store).counts_cached


def test_an_unwritable_counts_folder_means_counting_each_time(tmp_path, rides, counted):
    store = tmp_path / "cache"
    store.mkdir()
    (store / "counts").write_text("not a folder")
    for out in ("a", "b"):
        assert not build(rides, tmp_path / out, store).counts_cached
    assert len(counted) == 10
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


def test_only_the_most_recently_used_entries_are_kept(tmp_path, monkeypatch):
    store = tmp_path / "cache"
    monkeypatch.setattr(countcache, "MAX_ENTRIES", 3)
    key = {"a": "key", "count": 1}
    grids = [tiles.grid_covering(tiles.xy_bounds(tiles.Tile(100, 200, 9)), zoom)
             for zoom in (10, 11, 12, 13)]
    block = np.ones((256, 256), dtype=np.uint32)

    def store_counts(grid):
        assert countcache.store(store, key, [(grid, countcache.Counted(
            {(0, 0): block}, 1, 0, np.array([True])))])

    for grid in grids:
        store_counts(grid)
    assert len(list((store / "counts").glob("*.bin"))) == 3
    assert countcache.load(store, key, grids[0]) is None  # the oldest went first
    # Using an entry makes it the newest: the zoom 11 one outlives zoom 12's.
    assert countcache.load(store, key, grids[1]) is not None
    store_counts(grids[0])
    assert countcache.load(store, key, grids[1]) is not None
    assert countcache.load(store, key, grids[2]) is None
    # A build's own grids are never pruned by its own stores, whatever the limits.
    monkeypatch.setattr(countcache, "MAX_BYTES", 1)
    many = [tiles.grid_covering(tiles.xy_bounds(tiles.Tile(7, 9, 5)), zoom)
            for zoom in range(6, 12)]
    assert countcache.store(store, key, [(grid, countcache.Counted(
        {(0, 0): block}, 1, 0, np.array([True]))) for grid in many[1:]], keep=many[:1])
    assert countcache.load(store, key, many[0]) is None  # never stored: nothing to keep
    assert all(countcache.load(store, key, grid) is not None for grid in many[1:])


def test_a_cached_build_too_big_for_memory_is_refused_before_its_tiles_are_made(
        tmp_path, rides, monkeypatch):
    store = tmp_path / "cache"
    build(rides, tmp_path / "a", store)
    monkeypatch.setattr(counting, "available_memory", lambda: 2**20)
    with pytest.raises(TooBig, match=r"tiles at zoom 15.*lower --zoom"):
        build(rides, tmp_path / "b", store)


sparse_tiles = st.dictionaries(
    st.tuples(st.integers(0, 2**15 - 1), st.integers(0, 2**15 - 1)),
    st.lists(st.tuples(st.integers(0, 256 * 256 - 1), st.integers(1, 2**32 - 1)),
             min_size=1, max_size=40),
    max_size=6)


@settings(max_examples=40, deadline=None)
@given(sparse_tiles, st.integers(0, 10**9), st.lists(st.booleans(), max_size=5))
def test_any_sparse_counts_round_trip(tmp_path_factory, pixels, outside, drawn):
    store = tmp_path_factory.mktemp("cache")
    counts = {}
    for key, values in pixels.items():
        block = np.zeros((256, 256), dtype=np.uint32)
        for flat, value in values:
            block.reshape(-1)[flat] = value
        counts[key] = block
    key = {"any": "key", "count": len(drawn)}
    grid = tiles.grid_covering(tiles.xy_bounds(tiles.Tile(3, 5, 4)), 15)
    assert countcache.store(store, key, [(grid, countcache.Counted(counts, 7, outside, drawn))])
    back = countcache.load(store, key, grid)
    assert (back.used, back.outside, back.drawn.tolist()) == (7, outside, drawn)
    assert back.counts.keys() == counts.keys()
    for k in counts:
        assert back.counts[k].dtype == np.uint32 and back.counts[k].shape == (tiles.TILE_SIZE,) * 2
        np.testing.assert_array_equal(back.counts[k], counts[k])
    assert countcache.load(store, {**key, "any": "other"}, grid) is None
    assert countcache.load(store, key, grid._replace(zoom=16)) is None


def test_another_zoom_or_output_counts_only_the_grids_not_counted_before(
        tmp_path, rides, monkeypatch):
    # Exploring zooms and adding outputs: every grid counted once is kept on its own,
    # so a build at zoom 14 after one at 15 counts nothing (its grids were the levels),
    # and adding a tile archive counts only the levels it adds.
    grids_counted = []
    real = counting.count_activity

    def spy(parsed, box, grids, *args):
        grids_counted.append(tuple(g.zoom for g in grids))
        return real(parsed, box, grids, *args)

    monkeypatch.setattr(counting, "count_activity", spy)
    store = tmp_path / "cache"
    first = build(rides, tmp_path / "a", store, zoom=15, mbtiles=None)  # PNG and COG
    assert not first.counts_cached and len(set(grids_counted)) == 1
    top_and_overviews = set(grids_counted[0])
    grids_counted.clear()
    lower = build(rides, tmp_path / "b", store, zoom=14, mbtiles=None)
    assert lower.counts_cached and grids_counted == []
    with_archive = build(rides, tmp_path / "c", store, zoom=15, min_zoom=6)
    assert not with_archive.counts_cached
    # The archive's levels below not counted before, and its level above (16).
    assert set(grids_counted) == {tuple(z for z in (*range(15, 5, -1), 16)
                                        if z not in top_and_overviews)}
    for out, options in (("b", {"zoom": 14, "mbtiles": None}),
                         ("c", {"zoom": 15, "min_zoom": 6})):
        build(rides, tmp_path / f"{out}-fresh", None, **options)
        assert outputs(tmp_path / out) == outputs(tmp_path / f"{out}-fresh")


def test_a_file_rewritten_during_a_build_is_skipped_not_miscounted(
        tmp_path, rides, write_gpx, monkeypatch):
    # The first look reads parse-cache headers only; the points are loaded when counted.
    # A file rewritten in between no longer gives the points its summary stands for.
    store = tmp_path / "cache"
    build(rides, tmp_path / "a", store, mbtiles=None)  # zoom 15: 16's levels are kept
    real = countcache.entry_key

    def key_then_rewrite(*args, **kwargs):  # the levels found are r2's before
        key = real(*args, **kwargs)
        write_gpx("r2.gpx", straight(14.51, 46.05, 14.53, 46.075), folder=rides)
        return key

    monkeypatch.setattr(countcache, "entry_key", key_then_rewrite)
    warnings = []
    result = build(rides, tmp_path / "b", store, mbtiles=None, zoom=16,
                   on_warning=warnings.append)
    assert [(Path(name).name, "changed while it was read" in why)
            for name, why in result.skipped] == [("r2.gpx", True)]
    assert result.activities == 4 and not result.counts_cached
    assert [w for w in warnings if w.startswith("skipped ")] == [
        f"skipped {result.skipped[0][1]}"]
    entries = {e.path: e.status for e in result.entries}
    assert sorted(entries.values()) == ["drawn"] * 4 + ["skipped"]
    # Its cached levels counted r2 as it was: none was used, and nothing was kept.
    monkeypatch.undo()
    (rides / "r2.gpx").unlink()
    without = build(rides, tmp_path / "c", None, mbtiles=None, zoom=16)
    # The same heat as a build without r2 (its tags count the files found: 5, not 4).
    assert (tmp_path / "b" / "h.png").read_bytes() == (tmp_path / "c" / "h.png").read_bytes()
    with rasterio.open(tmp_path / "b" / "h-heat.tif") as b:
        levels = len(b.overviews(1))
    assert levels >= 1
    for level in [None, *range(levels)]:  # the full resolution, then each overview
        extra = {} if level is None else {"overview_level": level}
        with rasterio.open(tmp_path / "b" / "h-heat.tif", **extra) as b, \
                rasterio.open(tmp_path / "c" / "h-heat.tif", **extra) as c:
            assert b.transform == c.transform
            np.testing.assert_array_equal(b.read(), c.read())
    write_gpx("r2.gpx", straight(14.51, 46.05, 14.53, 46.075), folder=rides)
    again = build(rides, tmp_path / "d", store, mbtiles=None, zoom=16)
    fresh = build(rides, tmp_path / "e", None, mbtiles=None, zoom=16)
    assert again.activities == fresh.activities == without.activities + 1 == 5
    assert outputs(tmp_path / "d") == outputs(tmp_path / "e")


def test_a_file_removed_during_a_build_is_skipped(tmp_path, rides, monkeypatch):
    store = tmp_path / "cache"
    build(rides, tmp_path / "a", store, mbtiles=None)
    real = counting.read_files

    def read_then_remove(*args, **kwargs):
        parsed = real(*args, **kwargs)
        (rides / "r1.gpx").unlink()
        return parsed

    monkeypatch.setattr(counting, "read_files", read_then_remove)
    result = build(rides, tmp_path / "b", store, mbtiles=None, zoom=16)
    assert result.activities == 4 and [Path(name).name for name, _ in result.skipped] == [
        "r1.gpx"]
