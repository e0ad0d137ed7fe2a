"""BuildOptions: every setting checked once, in one place, with one clear message."""

from pathlib import Path

import pytest

from geoheat.checks import available_cores, check_zoom
from geoheat.errors import OutputError, ParameterError
from geoheat.options import BuildOptions


def test_defaults_are_the_librarys():
    options = BuildOptions()
    assert options.inputs == (Path("gpx"),) and options.output == Path("heatmap.png")
    assert (options.zoom, options.scaling, options.mode, options.sigma) == (None, "cdf", "lines", 1.0)
    assert (options.basemap, options.parse_cache, options.jobs) == (None, None, 1)
    assert options.outputs == {"png": Path("heatmap.png"), "tif": Path("heatmap-heat.tif"),
                               "qml": Path("heatmap-heat.qml")}
    assert options.colormap == "hot"


def test_values_are_normalised():
    options = BuildOptions(inputs="tracks", output="out/h.png", years=["2023,2024", 2022],
                           types=["Ride,Run", " Walk "], zoom="12", min_zoom="auto",
                           basemap="None", style="strava", mbtiles="t.mbtiles", csv=True)
    assert options.inputs == (Path("tracks"),)
    assert options.years == (2022, 2023, 2024)
    assert options.types == ("Ride", "Run", "Walk")
    assert (options.zoom, options.min_zoom, options.basemap) == (12, None, None)
    assert options.colormap == "strava"
    assert options.outputs["csv"] == Path("out/h.csv")
    assert options.outputs["mbtiles"] == Path("t.mbtiles")


def test_the_original_scripts_minus_one_zoom_is_auto():
    assert check_zoom(-1) is None and check_zoom("-1") is None and check_zoom("auto") is None
    assert BuildOptions(zoom=-1).zoom is None


@pytest.mark.parametrize("settings, message", [
    ({"zoom": 20}, "zoom must be 0-19"),
    ({"zoom": -2}, "zoom must be 0-19"),
    ({"zoom": True}, "zoom must be 0-19"),
    ({"min_zoom": 15, "zoom": 12}, "min zoom 15 is above the output zoom 12"),
    ({"sigma": -1}, "sigma must be 0-50"),
    ({"sigma": 200}, "sigma must be 0-50"),
    ({"sigma": float("inf")}, "sigma must be a number"),
    ({"max_size": 10}, "max size must be at least 256"),
    ({"mode": "dots"}, "mode must be one of lines, points"),
    ({"scaling": "log"}, "scaling must be one of cdf, linear"),
    ({"extent": "some"}, "extent must be one of auto, all"),
    ({"style": "neon"}, "style must be one of hot, strava"),
    ({"cmap": "jet"}, "cmap must be one of"),
    ({"years": ["twenty"]}, "year must be a whole number"),
    ({"bounds": (10, 5, 0, 1)}, "LAT_MIN < LAT_MAX"),
    ({"bounds": (-95, 0, 0, 1)}, "latitudes must be within"),
    ({"bounds": (0, 1, 0, 200)}, "longitudes must be within"),
    ({"bounds": (0, 1, 2)}, "four numbers"),
    ({"jobs": 0}, "jobs must be a whole number >= 1"),
    ({"jobs": 10_000}, "jobs must be 1-"),
    ({"max_tiles": 0}, "max tiles must be a whole number >= 1"),
    ({"tile_timeout": 0}, "tile timeout must be > 0"),
    ({"inputs": []}, "no input given"),
])
def test_bad_values_are_refused_with_one_line(settings, message):
    with pytest.raises(ParameterError, match=message) as caught:
        BuildOptions(**settings)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers that know no geoheat can catch it


def test_jobs_are_bounded_by_the_cores():
    cores = available_cores()
    assert BuildOptions(jobs=cores).jobs == cores
    with pytest.raises(ParameterError, match=f"{cores} cores"):
        BuildOptions(jobs=cores * 2 + 1)


@pytest.mark.parametrize("settings", [{"output": "h.jpg"}, {"mbtiles": "t.db"},
                                      {"pmtiles": "t.mbtiles"}])
def test_bad_output_names_are_output_errors(settings):
    with pytest.raises(OutputError) as caught:
        BuildOptions(**settings)
    assert isinstance(caught.value, OSError) and "must end in" in str(caught.value)


def test_options_are_frozen_and_replace_checks_again():
    options = BuildOptions(zoom=12)
    with pytest.raises(AttributeError):
        options.zoom = 13
    assert options.replace(zoom=13).zoom == 13 and options.zoom == 12
    with pytest.raises(ParameterError):
        options.replace(zoom=30)


@pytest.mark.parametrize("settings", [
    {"report": "h.png"}, {"report": "h-heat.tif"}, {"mbtiles": "t.mbtiles", "report": "t.mbtiles"},
    {"explorer": "x.gpkg", "report": "x.gpkg"}])
def test_two_outputs_of_one_name_are_refused(tmp_path, settings):
    """--report h.png wrote the report's JSON over the PNG, silently."""
    from geoheat.errors import OutputError

    named = {key: tmp_path / value for key, value in settings.items()}
    with pytest.raises(OutputError, match="named for two outputs"):
        BuildOptions(inputs=[tmp_path], output=tmp_path / "h.png", **named)


def test_each_part_holds_its_settings_and_the_flat_reads_are_the_parts():
    from geoheat.options import Basemap, Drawing, Reading, Selection, Writing

    options = BuildOptions(inputs=["tracks"], jobs=1, years="2024", zoom="12", sigma=2,
                           csv=True, basemap="osm", max_tiles=5)
    assert options.reading == Reading(inputs=["tracks"], jobs=1)
    assert options.selection == Selection(years=[2024])
    assert options.drawing == Drawing(zoom=12, sigma=2.0)
    assert options.writing == Writing(csv=True)
    assert options.map == Basemap(basemap="osm", max_tiles=5)
    assert options.writing.outputs == options.outputs and "csv" in options.outputs
    for name, value in options.settings().items():
        part = next(p for p in (options.reading, options.selection, options.drawing,
                                options.writing, options.map) if hasattr(p, name))
        assert getattr(part, name) == value == getattr(options, name)
    assert len(options.settings()) == 45  # every setting, once


def test_a_part_checks_itself():
    from geoheat.options import Drawing, Reading, Writing

    with pytest.raises(ParameterError, match="zoom must be 0-19"):
        Drawing(zoom=30)
    with pytest.raises(ParameterError, match="jobs must be a whole number"):
        Reading(jobs=0)
    with pytest.raises(OutputError, match="must end in"):
        Writing(output="h.jpg")


def test_settings_across_parts_are_checked_together():
    with pytest.raises(ParameterError, match="min zoom 15 is above the output zoom 12"):
        BuildOptions(min_zoom=15, zoom=12)  # writing's min zoom, drawing's zoom


def test_replace_changes_one_part_and_the_options_travel_whole():
    import pickle

    options = BuildOptions(zoom=12, privacy_zones=["46.05,14.5,300"])
    changed = options.replace(zoom=13)
    assert changed.drawing.zoom == 13 and changed.reading == options.reading
    assert changed.zones == options.zones and len(changed.zones) == 1
    assert BuildOptions(**options.settings()) == options
    assert pickle.loads(pickle.dumps(options)) == options  # to Dask's workers and back
    assert hash(options) == hash(options.replace())
    with pytest.raises(TypeError, match="unexpected keyword argument 'zooom'"):
        BuildOptions(zooom=12)


def test_inputs_and_output_may_come_by_position_the_rest_by_keyword():
    options = BuildOptions(["tracks"], "h.tif", zoom=12)
    assert (options.inputs, options.output, options.zoom) == ((Path("tracks"),), Path("h.tif"), 12)
    with pytest.raises(TypeError, match="too many positional arguments"):
        BuildOptions(["tracks"], "h.tif", None)
