"""Privacy zones and hidden ends: nothing drawn inside, nothing changed outside, nothing
said of where (geoheat.privacy, and its hooks in the build, the counts cache and serve)."""

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import geoheat
from geoheat import privacy, tiles
from geoheat.cli import cli
from geoheat.options import BuildOptions
from geoheat.privacy import Privacy
from geoheat.privacy_settings import Zone
from geoheat.projection import project
from geoheat.reading import read_files
from geoheat.render import Renderer
from geoheat.sources import find_sources

from .conftest import shared_folder, straight

R = tiles.EARTH_RADIUS


def ground_distance(xy: np.ndarray, zone: Zone) -> np.ndarray:
    """Metres on the ground from each EPSG:3857 point to the zone's centre (the scale
    at the centre: the zones are a few hundred metres)."""
    centre = project(np.array([[zone.lon, zone.lat]]))[0]
    return np.hypot(*(xy - centre).T) / np.cosh(centre[1] / R)


# --- the cut, on made-up lines -----------------------------------------------------------


def line_through(zone: Zone, n: int = 5, half_degrees: float = 0.01) -> np.ndarray:
    """n points on the parallel through the zone's centre, across it."""
    lon = np.linspace(zone.lon - half_degrees, zone.lon + half_degrees, n)
    return project(np.column_stack([lon, np.full(n, zone.lat)]))


def test_a_line_stops_at_the_zone_edge_and_jumps_nothing():
    zone = Zone(30.0, 104.0, 200)
    xy = line_through(zone)  # the middle point lies in the zone
    shown = privacy.hide(xy, np.array([0, 5]), np.arange(5.0) * 100, Privacy((zone,)))
    assert shown.offsets.tolist() == [0, 3, 6]  # two pieces: no line across the zone
    assert shown.hidden == 1
    assert shown.original.tolist() == [True, True, False, False, True, True]
    distance = ground_distance(shown.xy, zone)
    assert distance[2] == pytest.approx(200, abs=0.01)  # the cuts lie on the circle
    assert distance[3] == pytest.approx(200, abs=0.01)
    assert (distance >= 200 - 0.01).all()
    # Times at the cuts: between their points', in proportion.
    assert 100 < shown.times[2] < 200 < shown.times[3] < 300
    assert shown.times[2] + shown.times[3] == pytest.approx(400)


def test_a_step_jumping_over_a_zone_is_cut_too():
    zone = Zone(30.0, 104.0, 200)
    xy = line_through(zone, n=2)  # two points 2 km apart, the zone between them
    shown = privacy.hide(xy, np.array([0, 2]), None, Privacy((zone,)))
    assert shown.hidden == 0
    assert len(shown.xy) == 4 and shown.offsets.tolist() == [0, 2, 4]
    assert ground_distance(shown.xy[1:3], zone) == pytest.approx([200, 200], abs=0.01)


def test_outside_every_zone_nothing_changes():
    zone = Zone(31.0, 104.0, 200)  # 110 km north of the line
    xy = line_through(Zone(30.0, 104.0))
    shown = privacy.hide(xy, np.array([0, 5]), None, Privacy((zone,)))
    assert np.array_equal(shown.xy, xy) and shown.offsets.tolist() == [0, 5]
    assert shown.hidden == 0


def test_long_steps_by_a_zone_keep_every_pixel_outside_it():
    """A step cut at the zone's edge and sampled anew shifted pixels of the line far from
    the zone (51 here, at zoom 18); the samples inside are masked instead."""
    zone = Zone(30.6, 104.0, 200)
    lat = 30.6 + np.array([0.001, -0.0012, 0.0013, -0.0009, 0.0011, -0.001])
    xy = project(np.column_stack([np.linspace(103.99, 104.01, 6), lat]))  # 400 m steps
    check_lines_around(xy, np.array([0, 6]), zone, 18, require_tracks=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-600, 600), st.floats(-600, 600)), min_size=1,
                max_size=12),
       st.floats(20, 400), st.integers(15, 19), st.integers(1, 3))
def test_any_track_keeps_its_pixels_outside_a_zone(steps, radius, zoom, cuts):
    """Property: whatever the track (metres from the zone's centre) and the zone, every
    pixel wholly inside is 0 and every pixel wholly outside keeps its count."""
    zone = Zone(30.6, 104.0, radius)
    centre = project(np.array([[zone.lon, zone.lat]]))[0]
    xy = centre + np.array(steps) * math.cosh(centre[1] / R)
    offsets = np.unique(np.linspace(0, len(xy), cuts + 1).astype(np.int64))
    check_lines_around(xy, offsets, zone, zoom)


def check_lines_around(xy, offsets, zone, zoom, require_tracks=False):
    """The lines' counts with and without the zone: 0 in every pixel inside, the same
    in every pixel outside (checked on the pixels either lights)."""
    from geoheat import rasterize

    grid = tiles.grid_covering(tiles.Bbox(*(xy.min(axis=0) - 10), *(xy.max(axis=0) + 10)), zoom)
    base = lit_pixels(rasterize.count_tracks(xy, offsets, grid))
    mask = privacy.SampleFilter(xy, None, Privacy((zone,)))
    hidden = lit_pixels(rasterize.count_tracks(xy, offsets, grid, hidden=mask))
    pixels = sorted(base.keys() | hidden.keys())
    rows, cols = (np.array([p[i] for p in pixels], dtype=float) for i in (0, 1))
    size = tiles.resolution(zoom)
    centres = np.column_stack([-tiles.ORIGIN_SHIFT + (cols + 0.5) * size,
                               tiles.ORIGIN_SHIFT - (rows + 0.5) * size]).reshape(-1, 2)
    check_hidden_at(np.array([base.get(p, 0) for p in pixels]),
                    np.array([hidden.get(p, 0) for p in pixels]), centres, [zone], zoom,
                    require_tracks=require_tracks)


def lit_pixels(counts) -> dict:
    """{(world row, world col): count} of sparse counts' lit pixels."""
    found = {}
    for (x, y), block in counts.items():
        for r, c in zip(*np.nonzero(block)):
            found[(y * 256 + int(r), x * 256 + int(c))] = int(block[r, c])
    return found


def test_hidden_ends_cut_the_first_and_last_metres():
    xy = line_through(Zone(30.0, 104.0), n=5)  # 4 steps of ~482 m
    shown = privacy.hide(xy, np.array([0, 5]), None, Privacy((), 300))
    from geoheat.summary import ground_steps

    along = np.concatenate([[0], np.cumsum(ground_steps(xy, np.array([0, 5])))])
    ends = np.concatenate([[0], np.cumsum(ground_steps(shown.xy, shown.offsets))])
    assert shown.hidden == 2 and shown.offsets.tolist() == [0, 5]
    assert ends[-1] == pytest.approx(along[-1] - 600, abs=0.01)
    assert np.hypot(*(shown.xy[0] - xy[0])) / np.cosh(xy[0, 1] / R) == pytest.approx(300, abs=0.01)


def test_a_short_activity_is_hidden_whole():
    xy = line_through(Zone(30.0, 104.0), n=3, half_degrees=0.001)  # ~190 m long
    shown = privacy.hide(xy, np.array([0, 3]), None, Privacy((), 100))
    assert len(shown.xy) == 0 and shown.offsets.tolist() == [0] and shown.hidden == 3


def test_points_mode_drops_the_points_inside():
    zone = Zone(30.0, 104.0, 200)
    xy = line_through(zone)
    shown = privacy.hide(xy, np.array([0, 5]), None, Privacy((zone,)), lines=False)
    assert len(shown.xy) == 4 and shown.hidden == 1
    assert (ground_distance(shown.xy, zone) > 200).all()


# --- finding zones -------------------------------------------------------------------------


def ends_at(places, counts, seed=0):
    """(n, 2, 2) starts and ends: counts[i] activities starting and ending within ~50 m
    of places[i] (lat, lon)."""
    rng = np.random.default_rng(seed)
    ends = []
    for (lat, lon), n in zip(places, counts):
        centre = project(np.array([[lon, lat]]))[0]
        ends.append(centre + rng.normal(0, 25, size=(n, 2, 2)))
    return np.concatenate(ends)


def test_auto_finds_the_places_many_activities_start_and_end():
    home, club, once = (30.60, 104.05), (30.65, 104.10), (30.70, 104.00)
    found = privacy.auto_zones(ends_at([home, club, once], [40, 6, 3]))
    assert len(found) == 2  # 'once' has 3 activities: fewer than 5
    assert (found[0].lat, found[0].lon) == pytest.approx(home, abs=0.0005)
    assert (found[1].lat, found[1].lon) == pytest.approx(club, abs=0.0005)
    assert all(200 <= zone.radius < 400 for zone in found)
    # Every start and end of the place inside its zone.
    ends = ends_at([home], [40]).reshape(-1, 2)
    assert (ground_distance(ends, found[0]) < found[0].radius).all()


def test_the_neighbours_auto_counts_are_those_within_reach():
    rng = np.random.default_rng(3)
    points = rng.normal(0, 800, size=(300, 2)) + [1.158e7, 3.58e6]
    reach = np.full(300, 200.0) * np.cosh(points[:, 1] / R)
    found = privacy._within(points, reach)
    distance = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    for i in range(300):
        assert found[i].tolist() == np.flatnonzero(distance[i] <= reach[i]).tolist()


def test_auto_needs_a_tenth_of_the_activities():
    # 6 at the club is not 10% of 100 activities.
    found = privacy.auto_zones(ends_at([(30.6, 104.05), (30.65, 104.10)], [94, 6]))
    assert len(found) == 1


def test_cli_says_a_bad_zone_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["build", str(tmp_path), "--privacy-zone", "30.5;104"])
    assert result.exit_code != 0
    assert "expected LAT,LON" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- the build, on real runs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def chengdu(tmp_path_factory):
    """The shared Chengdu runs, parsed once into a cache the module's builds share; and
    the zones auto finds among them."""
    folder = shared_folder("chengdu-runs")
    cache = tmp_path_factory.mktemp("parse-cache")
    parsed = read_files(find_sources([folder]), cache)
    summaries = [p.summary for p in parsed if p.summary is not None]
    return folder, cache, privacy.resolve((), True, 0, summaries).zones


def counts_of(folder, cache, out, **settings):
    """A zoom-15 build's counts (sigma 0), read back: (counts, pixel centres x, y)."""
    result = geoheat.build([folder], out / "map.tif", zoom=15, sigma=0, counts=True,
                           parse_cache=cache, **settings)
    with rasterio.open(out / "map-counts.tif") as dataset:
        counts = dataset.read(1)
        rows, cols = np.indices(counts.shape)
        x, y = rasterio.transform.xy(dataset.transform, rows.ravel(), cols.ravel())
    xy = np.column_stack([np.asarray(x), np.asarray(y)])
    return result, counts.ravel(), xy


def check_hidden(base, hidden, xy, zones, margin_px=0.71):
    """0 in every pixel inside the zones, the base build's counts in every pixel outside
    them (its centre further than half a pixel's diagonal from the edge)."""
    check_hidden_at(base, hidden, xy, zones, 15, margin_px)


def check_hidden_at(base, hidden, xy, zones, zoom, margin_px=0.71, require_tracks=True):
    pixel = tiles.resolution(zoom) / np.cosh(xy[:, 1] / R)  # ground metres
    inside = np.zeros(len(xy), dtype=bool)
    near = np.zeros(len(xy), dtype=bool)
    for zone in zones:
        distance = ground_distance(xy, zone)
        inside |= distance < zone.radius - margin_px * pixel
        near |= distance < zone.radius + margin_px * pixel
    assert base[inside].sum() > 0 or not require_tracks  # the zones held tracks
    assert hidden[inside].sum() == 0
    assert np.array_equal(hidden[~near], base[~near])


def test_a_zone_given_hides_the_tracks_inside_and_nothing_else(chengdu, tmp_path):
    folder, cache, found = chengdu
    home = found[0]
    zone = Zone(round(home.lat, 4), round(home.lon, 4), 300)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    _, base, xy = counts_of(folder, cache, tmp_path / "a")
    result, hidden, _ = counts_of(folder, cache, tmp_path / "b",
                                  privacy_zones=[f"{zone.lat},{zone.lon},300"])
    check_hidden(base, hidden, xy, [zone])
    assert result.privacy["zones"] == 1 and result.privacy["points_hidden"] > 0
    assert result.points_used + result.points_hidden + result.points_outside \
        == result.points_read
    # The same zone from a file: the same counts.
    zone_file = tmp_path / "zones.txt"
    zone_file.write_text(f"# home\n{zone.lat},{zone.lon},300\n")
    _, from_file, _ = counts_of(folder, cache, tmp_path / "c", privacy_file=zone_file)
    assert np.array_equal(from_file, hidden)


def test_auto_zones_hide_the_busy_starts_and_say_only_counts(chengdu, tmp_path):
    folder, cache, found = chengdu
    assert len(found) >= 1
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _, base, xy = counts_of(folder, cache, tmp_path / "a")
    result, hidden, _ = counts_of(folder, cache, tmp_path / "b", privacy="auto", hide_ends=0,
                                  pmtiles=tmp_path / "b" / "map.pmtiles",
                                  report=tmp_path / "b" / "report.json")
    check_hidden(base, hidden, xy, found)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["privacy"]["zones"] == len(found)
    assert report["privacy"]["points_hidden"] == report["points"]["hidden"] > 0
    # Nothing names where a zone is: no output holds its centre's degrees.
    texts = [(tmp_path / "b" / "report.json").read_text()]
    with rasterio.open(tmp_path / "b" / "map-counts.tif") as dataset:
        texts.append(json.dumps(dataset.tags()))
        assert dataset.tags()["PRIVACY"].startswith(f"zones={len(found)} ")
    with open(tmp_path / "b" / "map.pmtiles", "rb") as archive:
        texts.append(archive.read().decode("latin-1"))
    for zone in found:
        for text in texts:
            assert f"{zone.lat:.3f}" not in text and f"{zone.lon:.3f}" not in text


def test_auto_hides_the_ends_of_every_activity(chengdu, tmp_path):
    folder, cache, found = chengdu
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    zones_only, _, _ = counts_of(folder, cache, tmp_path / "a", privacy="auto", hide_ends=0)
    auto, _, _ = counts_of(folder, cache, tmp_path / "b", privacy="auto")
    assert auto.privacy["hide_ends_m"] == privacy.AUTO_HIDE_ENDS
    assert auto.points_hidden > zones_only.points_hidden
    assert auto.privacy["activities_touched"] == auto.activities + sum(auto.left_out.values())


def test_the_counts_cache_keeps_builds_with_other_zones_apart(tmp_path, write_gpx):
    zone = Zone(30.6, 104.0, 300)
    write_gpx("run.gpx", straight(103.98, 30.6, 104.02, 30.6, step_m=20))
    cache = tmp_path / "cache"
    plain = geoheat.build([tmp_path / "run.gpx"], tmp_path / "plain.tif", zoom=15,
                          parse_cache=cache)
    first = geoheat.build([tmp_path / "run.gpx"], tmp_path / "zone.tif", zoom=15,
                          parse_cache=cache, privacy_zones=[f"{zone.lat},{zone.lon},300"])
    again = geoheat.build([tmp_path / "run.gpx"], tmp_path / "zone.tif", zoom=15,
                          parse_cache=cache, privacy_zones=[f"{zone.lat},{zone.lon},300"])
    assert not first.counts_cached and again.counts_cached
    assert first.points_used < plain.points_used
    assert again.points_used == first.points_used and again.privacy == first.privacy
    for path in (cache / "counts").glob("*.bin"):  # the key holds a digest, not the zone
        assert b"30.6" not in path.read_bytes().split(b"\n")[2]


def test_a_build_sharing_tiles_without_privacy_says_how_once(tmp_path, write_gpx):
    write_gpx("run.gpx", straight(103.98, 30.6, 104.02, 30.6))
    lines = []
    geoheat.build([tmp_path / "run.gpx"], tmp_path / "a.pmtiles", zoom=14,
                  mbtiles=tmp_path / "a.mbtiles", on_warning=lines.append)
    assert lines == [privacy.SHARE_HINT]
    lines.clear()
    geoheat.build([tmp_path / "run.gpx"], tmp_path / "b.pmtiles", zoom=14, hide_ends=100,
                  on_warning=lines.append)
    geoheat.build([tmp_path / "run.gpx"], tmp_path / "c.png", zoom=14, basemap=None,
                  on_warning=lines.append)
    assert lines == []


def test_serve_draws_no_heat_inside_a_zone(tmp_path, write_gpx):
    zone = Zone(30.6, 104.0, 300)
    write_gpx("run.gpx", straight(103.98, 30.6, 104.02, 30.6, step_m=20),
              straight(104.0, 30.58, 104.0, 30.62, step_m=20))
    sources = find_sources([tmp_path])
    parsed = read_files(sources, None)
    plain = BuildOptions(inputs=[tmp_path], sigma=0)
    hidden = plain.replace(privacy_zones=[f"{zone.lat},{zone.lon},300"])
    z = 16
    tile = tiles.tile(zone.lon, zone.lat, z)
    unhidden = Renderer(plain, parsed)
    before = unhidden.index_tile(z, tile.x, tile.y, unhidden.default_view)
    renderer = Renderer(hidden, parsed)
    after = renderer.index_tile(z, tile.x, tile.y, renderer.default_view)
    assert renderer.fingerprint != unhidden.fingerprint
    bounds = tiles.xy_bounds(tile)
    size = bounds.right - bounds.left
    cols, rows = np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5)
    xy = np.column_stack([bounds.left + cols.ravel() * size / 256,
                          bounds.top - rows.ravel() * size / 256])
    pixel = size / 256 / math.cosh(xy[0, 1] / R)
    distance = ground_distance(xy, zone)
    inside = distance < zone.radius - 2 * pixel
    outside = distance > zone.radius + 2 * pixel
    assert before.ravel()[inside].any() and before.ravel()[outside].any()
    assert not after.ravel()[inside].any()
    assert after.ravel()[outside].any()


def test_site_without_privacy_is_told_once(tmp_path, write_gpx):
    write_gpx("run.gpx", straight(103.98, 30.6, 104.02, 30.6))
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "run.gpx"), "--no-cache",
                                      "--basemap", "none", "-o", str(tmp_path / "m.png"),
                                      "--site", str(tmp_path / "site"), "--zoom", "13",
                                      "--min-zoom", "12"])
    assert result.exit_code == 0, result.output
    assert result.output.count("--privacy auto") == 1
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "run.gpx"), "--no-cache",
                                      "--basemap", "none", "-o", str(tmp_path / "n.png"),
                                      "--site", str(tmp_path / "site2"), "--zoom", "13",
                                      "--min-zoom", "12", "--privacy", "auto"])
    assert result.exit_code == 0, result.output
    assert "--privacy auto" not in result.output
    assert "hidden by privacy" in result.output


def test_the_cache_key_never_holds_a_zone():
    from geoheat import countcache

    key = countcache.entry_key([], {}, None, "lines", Privacy((Zone(30.61, 104.07, 250),), 0))
    assert "30.61" not in json.dumps(key) and key["privacy"]
    assert countcache.entry_key([], {}, None, "lines")["privacy"] is None


@pytest.mark.parametrize("settings", [
    {"privacy": "auto"},
    {"privacy_zones": ["46.05,14.50,400"], "hide_ends": 300, "mode": "points", "sigma": 0},
])
@pytest.mark.parametrize("whole", [True, False])
def test_served_tiles_are_the_builds_tiles_under_privacy(tmp_path, settings, whole,
                                                         monkeypatch):
    import contextlib
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    from geoheat import metatiles

    if not whole:  # every level counted tile by tile, from the points near each tile
        monkeypatch.setattr(metatiles, "WHOLE_TILES", 0)

    samples = Path(__file__).resolve().parents[1] / "gpx"
    zoom = 15
    options = BuildOptions(inputs=[samples], output=tmp_path / "h.tif", zoom=zoom,
                           mbtiles=tmp_path / "h.mbtiles", min_zoom=zoom - 1, **settings)
    result = geoheat.build(options)
    assert result.points_hidden > 0
    with contextlib.closing(sqlite3.connect(tmp_path / "h.mbtiles")) as db:
        stored = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data "
                            "FROM tiles").fetchall()
    renderer = Renderer(options, read_files(find_sources([samples]), None))
    assert len(stored) > 10
    for z, x, row, data in stored:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as png:
                pixels = png.read()
        y = 2**z - 1 - row
        np.testing.assert_array_equal(renderer.rgba_tile(z, x, y), pixels,
                                      err_msg=f"tile {z}/{x}/{y}")


def test_serving_a_tile_file_with_privacy_options_is_refused(tmp_path, write_gpx):
    write_gpx("run.gpx", straight(103.98, 30.6, 104.02, 30.6))
    geoheat.build([tmp_path / "run.gpx"], tmp_path / "a.mbtiles", zoom=13, privacy="auto")
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "a.mbtiles"), "--privacy-zone",
                                      "30.6,104.0"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "privacy options apply when it is built" in result.output
