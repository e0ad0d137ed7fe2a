"""GIS-grade outputs: COG, QGIS style, georeferenced PNG, RGBA GeoTIFF, counts, MBTiles."""

import json
from datetime import datetime
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_validate

import geoheat
import geoheat.samples
from geoheat import colour, legend, tiles
from geoheat.colormaps import lut, with_alpha
from geoheat.projection import project

HOT = lut("hot")

SPOT = (14.50123, 46.05012)
ZOOM = 14


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build with every output, around a spot visited 30 times."""
    folder = tmp_path_factory.mktemp("gis")
    track = [(SPOT[0] + 0.004 * i, SPOT[1] + 0.002 * i) for i in range(12)]
    far = [(SPOT[0] + 0.02, SPOT[1] - 0.015)] * 3  # a second tile with a little heat
    (folder / "a.gpx").write_text(geoheat.samples.gpx_document(
        [np.array([SPOT] * 30), np.array(track), np.array(far)]))
    out = folder / "out"
    out.mkdir()
    result = geoheat.build([folder], out / "heat.png", zoom=ZOOM, sigma=1, csv=True,
                           rgba_tif=True, counts=True, mbtiles=out / "heat.mbtiles", min_zoom=11,
                           pmtiles=out / "heat.pmtiles",
                           mode="points")
    return out, result


def spot_pixel(src):
    return src.index(*project(np.array([SPOT]))[0])


def test_outputs_listed_and_written(built):
    out, result = built
    names = {"heat.png", "heat.pgw", "heat.png.aux.xml", "heat-heat.tif", "heat-heat.qml", "heat.csv",
             "heat.csvt", "heat-rgba.tif", "heat-counts.tif", "heat.mbtiles", "heat.pmtiles"}
    assert {p.name for p in out.iterdir()} == names | {".heat.geoheat-lock"}
    assert {p.name for p in result.outputs} == names  # the PNG's side files too


def test_the_report_lists_every_file_the_build_wrote(tmp_path):
    """--report's outputs name each file the build left, the PNG's world file and
    .aux.xml too; the summary line names the outputs one opens, as before."""
    from click.testing import CliRunner
    from geoheat.cli import cli

    (tmp_path / "a.gpx").write_text(geoheat.samples.gpx_document(
        [np.array([(SPOT[0] + 0.001 * i, SPOT[1]) for i in range(20)])]))
    out = tmp_path / "out"
    out.mkdir()
    ran = CliRunner().invoke(cli, [
        "build", str(tmp_path / "a.gpx"), "-o", str(out / "h.png"), "--zoom", str(ZOOM),
        "--basemap", "none", "--csv", "--rgba-tif", "--counts", "--mbtiles",
        str(out / "h.mbtiles"), "--report", str(out / "r.json")])
    assert ran.exit_code == 0, ran.stderr
    listed = json.loads((out / "r.json").read_text())["outputs"]
    assert sorted(listed) == sorted(str(p) for p in out.iterdir()
                                    if p.name != ".h.geoheat-lock")
    assert listed[:3] == [str(out / "h.png"), str(out / "h.pgw"), str(out / "h.png.aux.xml")]
    named = ran.stderr.strip().splitlines()[-1].split(" -> ")[1].split()
    assert named == [str(out / n) for n in ("h.png", "h-heat.tif", "h.csvt", "h.csv",
                                            "h-rgba.tif", "h-counts.tif", "h.mbtiles", "r.json")]


@pytest.mark.parametrize("name", ["heat-heat.tif", "heat-rgba.tif", "heat-counts.tif"])
def test_geotiffs_are_valid_cogs(built, name):
    out, _ = built
    valid, errors, _ = cog_validate(str(out / name))
    assert valid, errors
    with rasterio.open(out / name) as src:
        assert src.crs.to_epsg() == 3857 and src.block_shapes[0] == (256, 256)
        factors = src.overviews(1)
        assert factors and max(src.width, src.height) / factors[-1] <= 256  # down to one tile
        assert src.tags()["ZOOM"] == str(ZOOM)


@pytest.mark.parametrize("count, dtype", [(1, "float32"), (4, "uint8")])
def test_cogs_are_the_same_bytes_compressed_on_one_thread_or_all(tmp_path, monkeypatch,
                                                                 count, dtype):
    """GDAL deflates a COG's blocks on every core and reads the sparse GeoTIFFs it copies
    directly (not through its block cache); the file is still the one a single thread
    writes through the cache (the same blocks in the same order), its overviews too."""
    from geoheat import writers

    grid = tiles.Grid(14, 8800 * 256, 5700 * 256, 8 * 256, 6 * 256)
    rng = np.random.default_rng(5)
    blocks = {}
    for x, y in zip(rng.integers(8800, 8808, 30), rng.integers(5700, 5706, 30)):
        block = np.zeros((count, 256, 256), dtype)
        rows, cols = rng.integers(0, 256, (2, 4000))
        block[:, rows, cols] = rng.integers(1, 256, (count, 4000))
        blocks[int(x), int(y)] = block.squeeze() if count == 1 else block
    made = {}
    for threads, reading in (("ALL_CPUS", writers.COPY_READING), ("1", {})):
        monkeypatch.setattr(writers, "COMPRESS_THREADS", threads)
        monkeypatch.setattr(writers, "COPY_READING", reading)
        made[threads] = tmp_path / f"{threads}.tif"
        writers.write_tiled_cog(made[threads], blocks, grid, count=count, dtype=dtype)
    assert made["ALL_CPUS"].read_bytes() == made["1"].read_bytes()
    with rasterio.open(made["1"]) as cog:
        assert len(cog.overviews(1)) >= 2 and cog.profile["compress"] == "deflate"
        assert cog.read().any()


def test_heat_cog_is_hot_at_the_track(built):
    out, _ = built
    with rasterio.open(out / "heat-heat.tif") as src:
        assert (src.dtypes[0], src.nodata, src.descriptions[0]) == ("float32", 0, "heat")
        # The spot visited most is the hottest pixel: its count's rank, the top colour.
        assert src.read(1)[spot_pixel(src)] == src.read(1).max() > 0.95
        assert src.read(1, out_shape=(256, 256)).max() > 0.5  # the overview is hot too


def test_counts_geotiff_holds_raw_counts(built):
    out, result = built
    with rasterio.open(out / "heat-counts.tif") as src:
        counts = src.read(1)
        assert (src.dtypes[0], src.nodata) == ("uint32", 0)
        assert counts.sum() == result.points_used
        assert counts[spot_pixel(src)] >= 30


def test_rgba_geotiff_is_the_coloured_heat(built):
    out, _ = built
    with rasterio.open(out / "heat-heat.tif") as h, rasterio.open(out / "heat-rgba.tif") as src:
        rgba, values = src.read(), h.read(1)
        assert src.count == 4 and src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        assert src.transform == h.transform
    assert (rgba[3][values == 0] == 0).all()
    assert rgba[:, values > 0.5].min(axis=1)[3] == 255  # clearly hot: opaque
    np.testing.assert_array_equal(rgba, colour.shade_rgba(values, with_alpha(HOT)))


def test_qml_is_a_qgis_pseudocolour_style(built):
    out, _ = built
    root = ET.parse(out / "heat-heat.qml").getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    shader = renderer.find("rastershader/colorrampshader")
    assert shader.find("colorramp").get("type") == "gradient"
    # QGIS lists the items one by one (a discrete legend), not a ramp named by its ends.
    assert shader.find("rampLegendSettings").get("useContinuousLegend") == "0"
    items = shader.findall("item")
    assert len(items) >= 3
    assert (items[0].get("value"), items[0].get("alpha"), items[0].get("label")) == (
        "0", "0", "none")  # no heat: transparent
    values = [float(i.get("value")) for i in items]
    assert values == sorted(values) and values[-1] <= 1
    for item, value in zip(items[1:], values[1:]):  # each item has the table's colour there
        r, g, b, a = (int(v) for v in with_alpha(HOT)[int(round(value * 255))])
        assert (item.get("color"), item.get("alpha")) == (f"#{r:02x}{g:02x}{b:02x}", str(a))


def test_png_world_file_places_pixel_zero_at_grid_origin(built):
    out, result = built
    origin = tiles.grid_transform(result.grid)
    a, d, b, e, c, f = (float(line) for line in (out / "heat.pgw").read_text().split())
    assert (a, -e) == pytest.approx((tiles.resolution(ZOOM),) * 2)
    assert b == 0 and d == 0
    # A world file names the centre of the top-left pixel.
    assert c - a / 2 == pytest.approx(origin.c, abs=1e-3)
    assert f - e / 2 == pytest.approx(origin.f, abs=1e-3)
    with rasterio.open(out / "heat.png") as png:
        assert png.crs.to_epsg() == 3857
        assert png.transform.almost_equals(origin)


def read_tiles(path):
    with sqlite3.connect(path) as db:
        metadata = dict(db.execute("SELECT name, value FROM metadata"))
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles").fetchall()
    return metadata, rows


def test_mbtiles_top_level_is_exactly_the_tiles_with_heat(built):
    out, result = built
    metadata, rows = read_tiles(out / "heat.mbtiles")
    with rasterio.open(out / "heat-heat.tif") as src:
        values = src.read(1)
    visible = colour.lut_index(values) > 0  # what the colormap does not draw transparent
    grid = result.grid
    expected = {
        t for t in tiles.grid_tiles(grid)
        if visible[t.y * 256 - grid.row_off:(t.y + 1) * 256 - grid.row_off,
                   t.x * 256 - grid.col_off:(t.x + 1) * 256 - grid.col_off].any()
    }
    assert len(expected) >= 2
    # MBTiles rows count from the bottom (TMS): y = 2**z - 1 - tile_row.
    top = {tiles.Tile(x, 2**z - 1 - row, z): data for z, x, row, data in rows if z == ZOOM}
    assert set(top) == expected
    rgba = colour.shade_rgba(values, with_alpha(HOT))
    for t, data in top.items():
        with MemoryFile(data) as mem, mem.open() as png:
            assert (png.driver, png.width, png.height) == ("PNG", 256, 256)
            tile_pixels = png.read()
        r0, c0 = t.y * 256 - grid.row_off, t.x * 256 - grid.col_off
        # The top level is the heatmap's own pixels, not a resampling of them.
        np.testing.assert_array_equal(tile_pixels[:4], rgba[:, r0:r0 + 256, c0:c0 + 256])


def test_mbtiles_levels_and_metadata(built):
    out, result = built
    metadata, rows = read_tiles(out / "heat.mbtiles")
    # From where the heat fits one tile up to street zoom (16), above the output's 14:
    # each level from its own counts.
    assert sorted({z for z, *_ in rows}) == [11, 12, 13, 14, 15, 16]
    assert metadata["format"] == "png" and metadata["type"] == "overlay"
    assert (metadata["minzoom"], metadata["maxzoom"]) == ("11", "16")
    # MBTiles 1.3: a readable name; version is the tileset's revision (a number: the
    # newest activity's date), not the spec's "1.3".
    assert metadata["name"].startswith("heat: heat of ") and "geoheat" in metadata["attribution"]
    assert metadata["version"].isdigit() and metadata["version"] != "1.3"
    assert f"{result.points_used:,} points" in metadata["description"]
    lon, lat, zoom = metadata["center"].split(",")
    west, south, east, north = map(float, metadata["bounds"].split(","))
    assert west < float(lon) < east and south < float(lat) < north
    # The centre's zoom shows all the heat in a 1280 x 800 window.
    bounds = tiles.grid_bounds(result.grid)
    res = tiles.resolution(int(zoom))
    assert (bounds.right - bounds.left) / res <= 1280 and (bounds.top - bounds.bottom) / res <= 800
    assert 11 <= int(zoom) <= 16
    assert (bounds.right - bounds.left) / res > 640 or (bounds.top - bounds.bottom) / res > 400 \
        or zoom == "16"
    legend = json.loads(metadata["geoheat_legend"])
    assert set(legend["legend"]) == {str(z) for z in range(11, 17)}
    assert legend["unit"] == "track points"
    assert west <= SPOT[0] <= east and south <= SPOT[1] <= north
    with rasterio.open(out / "heat.mbtiles") as src:
        assert src.driver == "MBTiles" and src.count == 4 and src.crs.to_epsg() == 3857


def test_bad_mbtiles_options(tmp_path, write_gpx):
    write_gpx("a.gpx", [SPOT] * 3)
    with pytest.raises(geoheat.OutputError, match="must end in .mbtiles"):
        geoheat.build([tmp_path], tmp_path / "h.png", mbtiles=tmp_path / "h.db")
    with pytest.raises(geoheat.ParameterError, match="above the output zoom"):
        geoheat.build([tmp_path], tmp_path / "h.png", zoom=10, mbtiles=tmp_path / "h.mbtiles",
                      min_zoom=12)
    assert [p.name for p in tmp_path.iterdir()] == ["a.gpx"]


QGIS_SCRIPT = """
import json, os, sys
from qgis.core import QgsApplication, QgsLayerTreeLayer, QgsRasterLayer
from qgis.PyQt.QtCore import Qt
app = QgsApplication([], False)
app.initQgis()
report = {}
for path in sys.argv[1:]:
    layer = QgsRasterLayer(path, "layer")
    e = layer.extent()
    report[path] = {"valid": layer.isValid(), "crs": layer.crs().authid(),
                    "extent": [e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()],
                    "renderer": layer.renderer().type() if layer.renderer() else None,
                    "legend": [label for label, _ in layer.renderer().legendSymbologyItems()],
                    # What the layer panel and print layouts show under the layer.
                    "nodes": [[type(n).__name__, n.data(Qt.DisplayRole)] for n in
                              layer.legend().createLayerTreeModelLegendNodes(
                                  QgsLayerTreeLayer(layer))]}
print(json.dumps(report), flush=True)
os._exit(0)  # QGIS 3.22 can crash in exitQgis(); the report is already out
"""


def python_with_qgis():
    """An interpreter that imports qgis.core (Debian's python3-qgis), or None."""
    for python in (sys.executable, "/usr/bin/python3"):
        if Path(python).exists() and subprocess.run(
                [python, "-c", "import qgis.core"], capture_output=True).returncode == 0:
            return python
    return None


def test_qgis_loads_the_layers(built):
    """Where Debian's python3-qgis is installed: QGIS itself places both layers.

    QGIS runs in its own process: it links the system GDAL, which must not meet the
    GDAL inside rasterio's wheel in one process.
    """
    python = python_with_qgis()
    if python is None:
        pytest.skip("python3-qgis is not installed (apt-get install python3-qgis)")
    out, result = built
    paths = [str(out / "heat-heat.tif"), str(out / "heat.png")]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([python, "-c", QGIS_SCRIPT, *paths], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    bounds = tuple(tiles.grid_bounds(result.grid))
    for path in paths:
        layer = report[path]
        assert layer["valid"] and layer["crs"] == "EPSG:3857", (path, layer)
        assert tuple(layer["extent"]) == pytest.approx(bounds, abs=1e-3), path
    # heat.qml sits beside heat.tif, so QGIS drew it in pseudocolour, not grey, and its
    # legend names the track points (points mode) the colours stand for.
    assert report[paths[0]]["renderer"] == "singlebandpseudocolor"
    legend = [label for label in report[paths[0]]["legend"] if label]
    assert legend[0] == "none" and legend[-1].endswith("track points")
    # The layer panel lists the items one by one (QGIS 3.18+ reads rampLegendSettings; a
    # continuous ramp would be one QgsColorRampLegendNode named by the heat's ends).
    nodes = report[paths[0]]["nodes"]
    items = [text for kind, text in nodes if kind == "QgsRasterSymbolLegendNode"]
    assert items == legend and len(items) >= 3
    assert all(re.fullmatch(r"[\d,]+ track points?", text) for text in items[1:])
    assert not any(kind == "QgsColorRampLegendNode" for kind, _ in nodes)
    # ...and the PNG in its own colours, not through the GeoTIFF's ramp.
    assert report[paths[1]]["renderer"] == "multibandcolor"


def test_no_raster_is_styled_with_another_ones_qml(built):
    # QGIS loads NAME.qml for any raster NAME.* (its completeBaseName): only the heat
    # GeoTIFF may have a style beside it, or QGIS draws the PNG (or the MBTiles) through
    # the heat's ramp (seen in QGIS 3.22: flat white lines).
    out, result = built
    rasters = [p for p in result.outputs if p.suffix in (".png", ".tif", ".mbtiles")]
    styled = {p.name for p in rasters if p.with_name(p.name.split(".")[0] + ".qml").exists()}
    assert styled == {"heat-heat.tif"}


# Fixes from a real GIS check


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Runs and rides over three years: 2 runs in 2024 (GPX), the rest left out by filters."""
    folder = tmp_path_factory.mktemp("mixed")
    line = np.array([(SPOT[0] + 0.001 * i, SPOT[1] + 0.0005 * i) for i in range(30)])
    for name, kind, start in (("r1", "Run", "2024-03-02T07:00:00Z"),
                              ("r2", "Run", "2024-10-20T18:30:00Z"),
                              ("r3", "Run", "2023-05-01T07:00:00Z"),
                              ("b1", "Ride", "2024-06-01T07:00:00Z"),
                              ("b2", "Ride", "2022-06-01T07:00:00Z")):
        when = datetime.fromisoformat(start)
        shifted = line + [0, 0.0001 * len(name + kind) * (1 + int(name[1]))]
        (folder / f"{name}.gpx").write_text(geoheat.samples.gpx_document(
            [shifted], activity_type=kind, start=when))
    return folder


def test_metadata_records_the_activities_drawn_and_the_filters(mixed, tmp_path):
    result = geoheat.build([mixed], tmp_path / "m.png", zoom=14, years=[2024], types=["Run"],
                           mbtiles=tmp_path / "m.mbtiles", pmtiles=tmp_path / "m.pmtiles")
    assert result.activities == 2 and result.files_read == 5
    with rasterio.open(tmp_path / "m-heat.tif") as src:
        tags = src.tags()
    assert tags["ACTIVITIES"] == "2" and tags["ACTIVITY_TYPES"] == "Run:2"
    assert tags["FORMATS"] == "gpx:2"
    assert (tags["FIRST_ACTIVITY"], tags["LAST_ACTIVITY"]) == ("2024-03-02", "2024-10-20")
    assert (tags["FILTER_YEARS"], tags["FILTER_TYPES"], tags["FILTER_BOUNDS"]) == (
        "2024", "Run", "none")
    metadata, _ = read_tiles(tmp_path / "m.mbtiles")
    assert metadata["description"].startswith(
        "geoheat heatmap of 2 activities (2 Run; 2 GPX), 2024-03-02 to 2024-10-20,")
    assert "file" not in metadata["description"]
    assert (metadata["activities"], metadata["filter_years"], metadata["filter_types"]) == (
        "2", "2024", "Run")
    assert (metadata["first_activity"], metadata["last_activity"]) == ("2024-03-02", "2024-10-20")
    from pmtiles.reader import MmapSource, Reader

    with open(tmp_path / "m.pmtiles", "rb") as f:
        assert Reader(MmapSource(f)).metadata()["description"] == metadata["description"]


def test_a_geotiff_only_build_makes_no_png_and_fetches_no_map(mixed, tmp_path):
    warnings = []
    result = geoheat.build([mixed], tmp_path / "g.tif", zoom=14, basemap="osm",
                           on_warning=warnings.append)
    assert {p.name for p in result.outputs} == {"g.tif", "g.qml"}
    assert result.basemap is None and not warnings  # offline tests: a fetch would warn
    assert {p.name for p in tmp_path.iterdir()} == {"g.tif", "g.qml", ".g.geoheat-lock"}
    # --no-png with a .png name: the same, and --png with a .tif name adds the PNG
    result = geoheat.build([mixed], tmp_path / "n.png", zoom=14, basemap="osm", png=False)
    assert {p.name for p in result.outputs} == {"n-heat.tif", "n-heat.qml"} and result.basemap is None
    result = geoheat.build([mixed], tmp_path / "p.tiff", zoom=14, png=True)
    assert {p.name for p in result.outputs} == {"p-map.png", "p-map.pgw", "p-map.png.aux.xml",
                                                "p.tiff", "p.qml"}


def test_cli_names_outputs_by_extension_and_has_the_new_options(mixed, tmp_path):
    from click.testing import CliRunner

    from geoheat.cli import cli

    out = tmp_path / "c.tif"
    run = CliRunner().invoke(cli, [
        "build", str(mixed), "-o", str(out), "--zoom", "14", "--no-cache", "--pmtiles",
        str(tmp_path / "c.pmtiles"), "--normalize", "local", "--no-legend", "--csv",
        "--csv-min", "0.5", "--min-zoom", "12"])
    assert run.exit_code == 0, run.output
    names = {p.name for p in tmp_path.iterdir()}
    assert {"c.tif", "c.qml", "c.pmtiles", "c.csv", "c.csvt"} <= names and "c.png" not in names
    with rasterio.open(out) as src:
        assert src.tags()["NORMALIZE"] == "local"
    rows = (tmp_path / "c.csv").read_text().splitlines()[1:]
    assert rows and all(float(row.split(",")[2]) > 0.5 for row in rows)
    bad = CliRunner().invoke(cli, ["build", str(mixed), "-o", str(tmp_path / "c.jpg")])
    assert bad.exit_code == 2 and "must end in .png, .tif, .mbtiles or .pmtiles" in bad.output


def test_csvt_makes_gdal_read_numbers_and_points(built):
    out, result = built
    import fiona

    with fiona.open(out / "heat.csv") as layer:
        assert layer.schema["geometry"] == "Point"
        assert set(layer.schema["properties"].values()) == {"float"}
        feature = next(iter(layer))
        lon, lat = feature.geometry.coordinates
        assert (lat, lon) == (feature.properties["latitude"], feature.properties["longitude"])
        assert len(layer) == len((out / "heat.csv").read_text().splitlines()) - 1


def test_png_legend_and_qgis_ramp_speak_in_passes(mixed, built, tmp_path):
    with_key = geoheat.build([mixed], tmp_path / "k.png", zoom=15, sigma=1)
    geoheat.build([mixed], tmp_path / "n.png", zoom=15, sigma=1, legend=False)
    with rasterio.open(tmp_path / "k.png") as k, rasterio.open(tmp_path / "n.png") as n:
        keyed, plain = k.read(), n.read()
    differ = (keyed != plain).any(axis=0)
    rows, cols = np.nonzero(differ)
    scale = legend.legend_scale(keyed.shape[2])  # the key grows with the picture
    assert differ.any() and rows.min() >= keyed.shape[1] - 34 * scale
    assert cols.max() < 200 * scale
    items = ET.parse(tmp_path / "k-heat.qml").getroot().findall(".//colorrampshader/item")
    labels = [item.get("label") for item in items]
    named = [x for x in labels[1:] if x]  # each count named once, where the ramp reaches it
    assert labels[0] == "none" and all(re.fullmatch(r"\d+ pass(es)?", x) for x in named)
    counts = [int(x.split()[0]) for x in named]
    assert counts == sorted(set(counts)) and labels[1] == "1 pass"
    # Points mode counts track points; the spot visited 30 times is the top of the ramp.
    items = ET.parse(built[0] / "heat-heat.qml").getroot().findall(".//colorrampshader/item")
    named = [item.get("label") for item in items[1:] if item.get("label")]
    assert len(named) >= 2 and all(x.endswith(("track point", "track points")) for x in named)
    assert int(named[-1].split()[0]) >= 30
    assert with_key.activities == 5
