"""Explorer tiles (geoheat.explorer): the tiles the drawn lines cross, against an
independent dense sampling of the lines; the biggest square and cluster against brute
force; the GeoPackage read back with fiona."""

import datetime as dt
import json
import sqlite3
import xml.etree.ElementTree as ET

import fiona
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import geoheat
from geoheat import explorer, tiles
from geoheat.projection import project
from geoheat.rasterize import split_gaps
from geoheat.reading import load_points, read_files
from geoheat.sources import find_sources

from .conftest import shared_folder, straight


def sampled_tiles(xy, offsets, zoom, per_tile=400):
    """The tiles under points sampled along every step, at least per_tile samples per
    tile length: an independent (approximate) count of the tiles the lines cross."""
    col, row = tiles.world_pixels(xy, zoom)
    u, v = col / 256, row / 256
    found = set(zip(np.floor(u).astype(int).tolist(), np.floor(v).astype(int).tolist()))
    for a, b in zip(offsets[:-1], offsets[1:]):
        for i in range(a, b - 1):
            n = int(max(abs(u[i + 1] - u[i]), abs(v[i + 1] - v[i])) * per_tile) + 2
            t = np.linspace(0, 1, n)
            su = np.floor(u[i] + t * (u[i + 1] - u[i])).astype(int)
            sv = np.floor(v[i] + t * (v[i + 1] - v[i])).astype(int)
            found |= set(zip(su.tolist(), sv.tolist()))
    return found


def as_set(found):
    return set(map(tuple, found.tolist()))


def test_a_step_600_m_long_credits_the_tiles_between():
    # Zoom 17 tiles are ~264 m across here: two points 600 m apart on a parallel.
    xy = project(np.array([[104.0, 30.6], [104.0 + 0.6 / (111.32 * np.cos(np.radians(30.6))),
                                          30.6]]))
    found = explorer.line_tiles(xy, np.array([0, 2]), 17)
    first, last = tiles.tile(104.0, 30.6, 17), tiles.tile(104.00625, 30.6, 17)
    assert found[:, 1].tolist() == [first.y] * len(found)
    assert found[:, 0].tolist() == list(range(first.x, last.x + 1))
    assert len(found) >= 3  # not only the two tiles the points fall in


def test_a_diagonal_step_crosses_exactly_the_tiles_it_enters():
    # In tile units at zoom 0 scaled: from (0.5, 0.5) to (2.5, 1.5) tiles at zoom 10.
    zoom = 10
    size = 2 * tiles.ORIGIN_SHIFT / 2**zoom
    corner = np.array([-tiles.ORIGIN_SHIFT, tiles.ORIGIN_SHIFT])
    xy = corner + np.array([[0.5, -0.5], [2.5, -1.6]]) * size
    found = as_set(explorer.line_tiles(xy, np.array([0, 2]), zoom))
    assert found == {(0, 0), (1, 0), (1, 1), (2, 1)}


def test_a_gap_the_build_does_not_draw_credits_nothing_between():
    # Two points 60 km apart without times: a jump split_gaps breaks, not a line.
    xy = project(np.array([[104.0, 30.6], [104.0, 31.15]]))
    offsets = split_gaps(xy, np.array([0, 2]))
    assert len(explorer.line_tiles(xy, offsets, 14)) == 2


@pytest.mark.parametrize("zoom,thin", [(14, 1), (17, 1), (17, 40)])
def test_line_tiles_match_a_dense_sampling_of_real_runs(zoom, thin):
    folder = shared_folder("chengdu-runs")
    sources = find_sources([folder])[:40]
    for source, parsed in zip(sources, read_files(sources, None)):
        full = load_points(parsed, source, None)
        xy = full.xy[::thin]  # thinned: steps of a few hundred metres cross many tiles
        offsets = np.array([0, len(xy)])
        found = as_set(explorer.line_tiles(xy, offsets, zoom))
        sampled = sampled_tiles(xy, offsets, zoom)
        # (Sampling can miss a tile corner clipped by less than a sample's length; on
        # these runs it misses none.)
        assert found == sampled


def brute_square(cells):
    best = 0
    for x, y in cells:
        side = 1
        while all((x + i, y + j) in cells for i in range(side + 1) for j in range(side + 1)):
            side += 1
        best = max(best, side)
    return best


def brute_cluster(cells):
    inner = {(x, y) for x, y in cells
             if all(n in cells for n in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)))}
    best, seen = 0, set()
    for start in inner:
        if start in seen:
            continue
        stack, size = [start], 0
        seen.add(start)
        while stack:
            x, y = stack.pop()
            size += 1
            for n in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
                if n in inner and n not in seen:
                    seen.add(n)
                    stack.append(n)
        best = max(best, size)
    return best


def grid(text):
    """Tiles from a picture: '#' visited, '.' not; rows are y, columns x."""
    return np.array([(x, y) for y, line in enumerate(text.split()) for x, c in enumerate(line)
                     if c == "#"], dtype=np.int64).reshape(-1, 2)


def test_max_square_and_cluster_on_hand_made_grids():
    picture = grid("""
        ##....
        #####.
        #####.
        ####..
        .###..
    """)
    # Two 3 x 3 squares (x 0-2 and x 1-3, y 1-3): the first found in row order.
    assert explorer.max_square(picture) == (3, (0, 1))
    # Inner tiles (all four neighbours visited), connected: one cluster of six.
    assert as_set(explorer.max_cluster(picture)) == {(1, 1), (1, 2), (2, 2), (3, 2), (1, 3),
                                                     (2, 3)}
    two = grid("""
        .#....#.
        ###..###
        .#..####
        .....##.
    """)
    assert explorer.max_square(two)[0] == 2
    # (1, 1) alone on the left; (6, 1), (5, 2), (6, 2) on the right.
    assert as_set(explorer.max_cluster(two)) == {(6, 1), (5, 2), (6, 2)}
    assert explorer.max_square(np.empty((0, 2), dtype=np.int64)) == (0, None)
    assert len(explorer.max_cluster(np.empty((0, 2), dtype=np.int64))) == 0


@settings(max_examples=150, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=50))
def test_max_square_and_cluster_match_brute_force(cells):
    found = np.array(sorted(cells), dtype=np.int64).reshape(-1, 2)
    side, corner = explorer.max_square(found)
    assert side == brute_square(cells)
    if side:
        assert all((corner[0] + i, corner[1] + j) in cells
                   for i in range(side) for j in range(side))
    assert len(explorer.max_cluster(found)) == brute_cluster(cells)


def test_visits_count_activities_and_their_dates():
    a = np.array([[1, 1], [2, 1]])
    b = np.array([[2, 1]])
    found = explorer.visited([(a, dt.date(2024, 5, 1)), (b, dt.date(2023, 1, 2)),
                              (b, None)], 14)
    assert found.tiles.tolist() == [[1, 1], [2, 1]]
    assert found.visits.tolist() == [1, 3]
    assert found.first == [dt.date(2024, 5, 1), dt.date(2023, 1, 2)]
    assert found.last == [dt.date(2024, 5, 1), dt.date(2024, 5, 1)]


def test_the_geopackage_opens_styled(tmp_path, write_gpx):
    # Two runs 600 m steps apart, criss-crossing a 3 x 3 block of zoom-14 tiles.
    for i, lat in enumerate(np.linspace(30.56, 30.64, 5)):
        write_gpx(f"east{i}.gpx", straight(103.95, lat, 104.1, lat, step_m=600),
                  start=dt.datetime(2024, 1, 1 + i, 8))
    for i, lon in enumerate(np.linspace(103.96, 104.09, 6)):
        write_gpx(f"north{i}.gpx", straight(lon, 30.55, lon, 30.65, step_m=600),
                  start=dt.datetime(2024, 2, 1 + i, 8))
    out = tmp_path / "out"
    out.mkdir()
    result = geoheat.build([tmp_path], out / "map.tif", zoom=14, explorer=out / "tiles.gpkg",
                           report=out / "report.json")
    path = out / "tiles.gpkg"
    assert set(fiona.listlayers(path)) >= {"tiles", "max_square", "max_cluster"}
    with fiona.open(path, layer="tiles") as layer:
        assert layer.crs.to_epsg() == 3857
        features = list(layer)
        assert set(layer.schema["properties"]) >= {"visits", "first_visit", "last_visit"}
    assert len(features) == result.explorer["tiles"] > 9
    by_tile = {(f.properties["x"], f.properties["y"]): f for f in features}
    home = tiles.tile(104.02, 30.6, 14)
    visit = by_tile[(home.x, home.y)].properties
    assert visit["visits"] >= 2
    assert visit["first_visit"] == "2024-01-01" or visit["first_visit"] < visit["last_visit"]
    # A tile's polygon is the tile.
    bounds = tiles.xy_bounds(home)
    ring = np.array(by_tile[(home.x, home.y)].geometry["coordinates"][0])
    assert ring[:, 0].min() == pytest.approx(bounds.left)
    assert ring[:, 1].max() == pytest.approx(bounds.top)
    with fiona.open(path, layer="max_square") as layer:
        (square,) = list(layer)
        assert square.properties["side"] == result.explorer["max_square"] >= 3
    with fiona.open(path, layer="max_cluster") as layer:
        assert len(layer) == result.explorer["max_cluster"] >= 1
    with sqlite3.connect(path) as db:
        styles = db.execute("SELECT f_table_name, f_geometry_column, useAsDefault, styleQML "
                            "FROM layer_styles").fetchall()
    assert {row[0] for row in styles} == {"tiles", "max_square", "max_cluster"}
    for name, column, default, qml in styles:
        assert default == 1 and column == "geom"
        assert ET.fromstring(qml.split("\n", 1)[1]).find("renderer-v2") is not None
    report = json.loads((out / "report.json").read_text())
    assert report["explorer"] == result.explorer


def test_explorer_counts_every_activity_whatever_the_extent(tmp_path, write_gpx):
    write_gpx("near.gpx", straight(104.0, 30.6, 104.05, 30.6, step_m=100))
    write_gpx("far.gpx", straight(105.0, 31.6, 105.05, 31.6, step_m=100))
    out = tmp_path / "out"
    out.mkdir()
    inside = geoheat.build([tmp_path / "near.gpx", tmp_path / "far.gpx"], out / "a.tif",
                           zoom=14, bounds=(30.5, 30.7, 103.9, 104.1),
                           explorer=out / "a.gpkg")
    both = geoheat.build([tmp_path / "near.gpx", tmp_path / "far.gpx"], out / "b.tif",
                         zoom=14, extent="all", explorer=out / "b.gpkg")
    assert inside.explorer["tiles"] == both.explorer["tiles"]
    with fiona.open(out / "a.gpkg", layer="tiles") as layer:
        xs = {f.properties["x"] for f in layer}
    assert tiles.tile(105.02, 31.6, 14).x in xs


def test_privacy_zones_take_their_tiles_off(tmp_path, write_gpx):
    write_gpx("run.gpx", straight(104.0, 30.6, 104.1, 30.6, step_m=100))
    middle = tiles.tile(104.05, 30.6, 14)
    out = tmp_path / "out"
    out.mkdir()
    plain = geoheat.build([tmp_path], out / "a.tif", zoom=14, explorer=out / "a.gpkg")
    # A zone 2.5 km across centred in the track's middle tile covers the line across it
    # (the tile is ~2.1 km across here).
    bounds = tiles.xy_bounds(middle)
    centre = tiles.Bbox(*bounds)
    from geoheat.projection import unproject

    lon, lat = unproject(np.array([[(centre.left + centre.right) / 2, 0]]))[0][0], 30.6
    hidden = geoheat.build([tmp_path], out / "b.tif", zoom=14, explorer=out / "b.gpkg",
                           privacy_zones=[f"{lat},{lon},1300"])
    with fiona.open(out / "b.gpkg", layer="tiles") as layer:
        found = {(f.properties["x"], f.properties["y"]) for f in layer}
    assert (middle.x, middle.y) not in found
    assert hidden.explorer["tiles"] < plain.explorer["tiles"]


def test_explorer_names_and_zooms_are_checked(tmp_path):
    from geoheat.errors import OutputError, ParameterError
    from geoheat.options import BuildOptions

    with pytest.raises(OutputError, match=r"x\.sqlite: the explorer file name must end in \.gpkg"):
        BuildOptions(inputs=[tmp_path], explorer=tmp_path / "x.sqlite")
    with pytest.raises(ParameterError, match="explorer zoom must be 0-19"):
        BuildOptions(inputs=[tmp_path], explorer=tmp_path / "x.gpkg", explorer_zoom=20)
    options = BuildOptions(inputs=[tmp_path], explorer=tmp_path / "x.gpkg", explorer_zoom=17)
    assert options.outputs["explorer"] == tmp_path / "x.gpkg" and options.explorer_zoom == 17


def test_serve_gives_the_explorer_tiles_when_asked(tmp_path, write_gpx):
    import http.client
    import threading

    from geoheat.options import BuildOptions
    from geoheat.render import Renderer
    from geoheat.renderedtiles import RenderedTiles
    from geoheat.serve import make_server

    write_gpx("run.gpx", straight(104.0, 30.6, 104.1, 30.6, step_m=100))
    write_gpx("walk.gpx", straight(104.0, 30.55, 104.0, 30.65, step_m=100))
    out = tmp_path / "out"
    out.mkdir()
    built = geoheat.build([tmp_path / "run.gpx", tmp_path / "walk.gpx"], out / "a.tif",
                          zoom=14, explorer=out / "a.gpkg")
    options = BuildOptions(inputs=[tmp_path / "run.gpx", tmp_path / "walk.gpx"])
    renderer = Renderer(options, read_files(find_sources(options.inputs), None))
    server = make_server(RenderedTiles(renderer), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
        connection.request("GET", "/meta.json")
        assert json.loads(connection.getresponse().read())["explorer"] == "explorer.json"
        connection.request("GET", "/explorer.json")
        response = connection.getresponse()
        assert response.status == 200
        boxes = json.loads(response.read())
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert len(boxes) == built.explorer["tiles"]
    # Each box is a zoom-14 tile, in degrees; the run's first point lies in one of them.
    with fiona.open(out / "a.gpkg", layer="tiles") as layer:
        expected = {(f.properties["x"], f.properties["y"]) for f in layer}
    centres = {tiles.tile((w + e) / 2, (s + n) / 2, 14)[:2] for w, s, e, n in boxes}
    assert centres == expected


QGIS_CHECK = """
import json, os, sys
from qgis.core import QgsApplication, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
found = {}
for name in ("tiles", "max_square", "max_cluster"):
    layer = QgsVectorLayer(f"{sys.argv[1]}|layername={name}", name, "ogr")
    fill = layer.renderer().symbol().symbolLayer(0) if layer.isValid() else None
    found[name] = {"valid": layer.isValid(), "features": layer.featureCount(),
                   "crs": layer.crs().authid(),
                   "fill": fill.color().getRgb() if fill else None,
                   "outline": fill.strokeColor().getRgb() if fill else None}
print(json.dumps(found), flush=True)
os._exit(0)  # QGIS 3.22 may crash tearing itself down: what was asked is printed
"""


def test_qgis_opens_the_geopackage_styled(tmp_path, write_gpx):
    """QGIS (Debian's python3-qgis, on the system Python) reads each layer and the style
    stored for it: the colours geoheat wrote, not QGIS's random ones."""
    import os
    import subprocess

    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import qgis.core"], capture_output=True,
                           env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}) \
        if os.path.exists(system_python) else None
    if probe is None or probe.returncode != 0:
        pytest.skip("QGIS's Python (python3-qgis on /usr/bin/python3) is not installed")
    for i, lat in enumerate(np.linspace(30.56, 30.64, 5)):
        write_gpx(f"east{i}.gpx", straight(103.95, lat, 104.1, lat, step_m=600))
    for i, lon in enumerate(np.linspace(103.96, 104.09, 6)):
        write_gpx(f"north{i}.gpx", straight(lon, 30.55, lon, 30.65, step_m=600))
    out = tmp_path / "out"
    out.mkdir()
    result = geoheat.build([tmp_path], out / "map.tif", zoom=14, explorer=out / "x.gpkg")
    run = subprocess.run([system_python, "-c", QGIS_CHECK, str(out / "x.gpkg")],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    counts = {"tiles": result.explorer["tiles"], "max_square": 1,
              "max_cluster": result.explorer["max_cluster"]}
    for name, (fill, outline, _) in explorer.STYLES.items():
        layer = found[name]
        assert layer["valid"] and layer["crs"] == "EPSG:3857"
        assert layer["features"] == counts[name]
        assert layer["fill"] == [int(v) for v in fill.split(",")]
        assert layer["outline"] == [int(v) for v in outline.split(",")]
