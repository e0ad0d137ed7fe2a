"""The output cache: a rebuild that would write a GeoTIFF byte for byte again copies it
(and makes no heat for it), and anything its bytes depend on makes it again."""

import json
from datetime import datetime, timezone

import pytest
import rasterio

import geoheat
from geoheat import outputcache, pipeline, pyramid

from .conftest import straight


@pytest.fixture
def rides(tmp_path, write_gpx):
    folder = tmp_path / "in"
    for i in range(4):
        write_gpx(f"r{i}.gpx", straight(14.50 + i * 0.003, 46.05, 14.53, 46.07 + i * 0.001),
                  folder=folder, start=datetime(2020 + i, 5, 1 + i, 8, tzinfo=timezone.utc))
    return folder


@pytest.fixture
def blurs(monkeypatch):
    """How many times a build blurred a level (the output's or a pyramid level)."""
    calls = []
    for module in (pipeline, pyramid):
        real = module.blur_tiles

        def spy(*args, _real=real, **kwargs):
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "blur_tiles", spy)
    return calls


def build(rides, out, cache, name="h.tif", **settings):
    out.mkdir(exist_ok=True)
    settings = {"zoom": 15, "sigma": 1.5, "counts": True, "report": out / "r.json",
                **settings}
    return geoheat.build([rides], out / name, parse_cache=cache, **settings)


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix in (".tif", ".png", ".qml") and not p.name.startswith(".")}


def entries(cache):
    return sorted((cache / "outputs").glob("*.bin"))


def test_a_colormap_rebuild_copies_the_geotiffs_and_blurs_nothing(tmp_path, rides, blurs):
    cache = tmp_path / "cache"
    first = build(rides, tmp_path / "a", cache)
    assert blurs and len(entries(cache)) == 2  # the heat and counts GeoTIFFs
    blurs.clear()
    again = build(rides, tmp_path / "b", cache, cmap="viridis")
    assert blurs == []  # neither the output's heat nor a level's was made
    fresh = build(rides, tmp_path / "c", None, cmap="viridis")
    assert files(tmp_path / "b") == files(tmp_path / "c")
    assert files(tmp_path / "b")["h.tif"] == files(tmp_path / "a")["h.tif"]
    assert files(tmp_path / "b")["h.qml"] != files(tmp_path / "a")["h.qml"]  # its colours
    assert again.data_tiles == first.data_tiles == fresh.data_tiles > 0
    report = json.loads((tmp_path / "b" / "r.json").read_text())
    assert report["tiles"] == first.data_tiles and report["counts_from_cache"] is True
    with rasterio.open(tmp_path / "b" / "h.tif") as copied:  # a whole COG, read back
        assert copied.crs.to_epsg() == 3857 and copied.overviews(1)
        assert copied.read(1).max() > 0


def test_the_rgba_geotiff_is_made_again_in_the_new_colours(tmp_path, rides):
    cache = tmp_path / "cache"
    build(rides, tmp_path / "a", cache, rgba_tif=True, counts=False)
    build(rides, tmp_path / "b", cache, rgba_tif=True, counts=False, cmap="viridis")
    build(rides, tmp_path / "c", None, rgba_tif=True, counts=False, cmap="viridis")
    made, fresh = files(tmp_path / "b"), files(tmp_path / "c")
    assert made == fresh and made["h-rgba.tif"] != files(tmp_path / "a")["h-rgba.tif"]
    # And back: the first colours' RGBA GeoTIFF is copied, equal to the first build's.
    build(rides, tmp_path / "d", cache, rgba_tif=True, counts=False)
    assert files(tmp_path / "d") == files(tmp_path / "a")


def test_adding_the_counts_geotiff_to_a_cached_rebuild_blurs_nothing(tmp_path, rides, blurs):
    """The counts GeoTIFF's levels are counts: with the heat GeoTIFF copied, no level's
    heat is made for it."""
    cache = tmp_path / "cache"
    build(rides, tmp_path / "a", cache, counts=False)
    blurs.clear()
    build(rides, tmp_path / "b", cache, counts=True, cmap="viridis")
    assert blurs == []
    build(rides, tmp_path / "c", None, counts=True, cmap="viridis")
    assert files(tmp_path / "b") == files(tmp_path / "c")


def test_a_picture_rebuild_makes_only_the_output_zooms_heat(tmp_path, rides, blurs):
    cache = tmp_path / "cache"
    build(rides, tmp_path / "a", cache, name="h.png", basemap=None)
    blurs.clear()
    build(rides, tmp_path / "b", cache, name="h.png", basemap=None, cmap="viridis")
    assert len(blurs) == 1  # the PNG's heat; the GeoTIFFs' levels come copied
    build(rides, tmp_path / "c", None, name="h.png", basemap=None, cmap="viridis")
    assert files(tmp_path / "b") == files(tmp_path / "c")


@pytest.mark.parametrize("change", ["sigma", "scaling", "normalize", "edited file", "bounds",
                                    "year", "code"])
def test_whatever_a_geotiff_depends_on_makes_it_again(tmp_path, rides, write_gpx, blurs,
                                                      monkeypatch, change):
    cache = tmp_path / "cache"
    build(rides, tmp_path / "a", cache)
    settings = {}
    if change == "sigma":
        settings["sigma"] = 2.5
    elif change == "scaling":
        settings["scaling"] = "linear"
    elif change == "normalize":
        settings["normalize"] = "local"
    elif change == "edited file":
        write_gpx("r2.gpx", straight(14.51, 46.05, 14.53, 46.075), folder=rides)
    elif change == "bounds":
        settings["bounds"] = (46.04, 46.08, 14.49, 14.52)
    elif change == "year":
        settings["years"] = (2020, 2021, 2022)
    else:  # another geoheat, numpy, scipy or GDAL
        monkeypatch.setattr(outputcache, "code_digest", lambda: "another geoheat")
    blurs.clear()
    build(rides, tmp_path / "b", cache, **settings)
    assert blurs  # made, not copied
    build(rides, tmp_path / "c", None, **settings)
    assert files(tmp_path / "b") == files(tmp_path / "c")
    if change not in ("sigma", "scaling", "normalize", "code"):
        assert files(tmp_path / "b")["h.tif"] != files(tmp_path / "a")["h.tif"]


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "another key", "a link"])
def test_a_damaged_entry_is_ignored_and_made_again(tmp_path, rides, blurs, damage):
    cache = tmp_path / "cache"
    build(rides, tmp_path / "a", cache, counts=False)
    [entry] = entries(cache)
    data = bytearray(entry.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x40
        entry.write_bytes(bytes(data))
    elif damage == "cut short":
        entry.write_bytes(bytes(data[:-100]))
    elif damage == "another key":  # a valid entry of other bytes under this name
        head_end = data.index(b"\n", data.index(b"\n", 15) + 1)
        stored = json.loads(data[24:head_end])
        stored["key"]["sigma"] = 9
        rest = json.dumps(stored).encode() + data[head_end:]
        entry.write_bytes(b"geoheat-output\n" + b"%08x" % __import__("zlib").crc32(rest)
                          + b"\n" + rest)
    else:
        elsewhere = tmp_path / "elsewhere.bin"
        elsewhere.write_bytes(bytes(data))
        entry.unlink()
        entry.symlink_to(elsewhere)  # a link there is not geoheat's entry
    blurs.clear()
    build(rides, tmp_path / "b", cache, counts=False)
    assert blurs
    assert files(tmp_path / "b") == files(tmp_path / "a")
    assert not entry.is_symlink()  # replaced by the build's own entry


def test_without_a_cache_nothing_is_kept(tmp_path, rides, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    build(rides, tmp_path / "a", None)
    assert not list(tmp_path.rglob("*.bin"))


def test_only_the_most_recent_entries_are_kept(tmp_path, rides, monkeypatch):
    monkeypatch.setattr(outputcache, "MAX_ENTRIES", 3)
    cache = tmp_path / "cache"
    for sigma in (1, 2, 3):
        build(rides, tmp_path / "a", cache, sigma=sigma)  # two GeoTIFFs each
    assert len(entries(cache)) == 3
    build(rides, tmp_path / "a", cache, sigma=4)
    stranger = cache / "outputs" / "0123456789abcdef0123456789abcdef.bin"
    stranger.write_bytes(b"not geoheat's")  # a file geoheat did not make: left alone
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes((cache / "outputs").glob("*.bin").__next__().read_bytes())
    link = cache / "outputs" / "fedcba9876543210fedcba9876543210.bin"
    link.symlink_to(elsewhere)  # nor a link, nor what it points to
    build(rides, tmp_path / "a", cache, sigma=5)
    assert stranger.read_bytes() == b"not geoheat's" and link.is_symlink()
    assert elsewhere.exists()
    stranger.unlink()
    link.unlink()
    sigmas = sorted(json.loads(p.read_bytes().split(b"\n", 3)[2])["key"]["sigma"]
                    for p in entries(cache))
    assert sigmas == [4, 5, 5]  # this build's two, and the most recently used other


def test_an_entry_holds_the_file_as_written(tmp_path, rides):
    cache = tmp_path / "cache"
    result = build(rides, tmp_path / "a", cache, counts=False)
    [entry] = entries(cache)
    data = entry.read_bytes()
    assert data.endswith((tmp_path / "a" / "h.tif").read_bytes())
    stored = json.loads(data.split(b"\n", 3)[2])
    assert stored["meta"] == {"data_tiles": result.data_tiles}
    assert stored["key"]["kind"] == "tif" and stored["key"]["sigma"] == 1.5
    assert stored["key"]["counts"]["count"] == 4  # the four rides' counts
