"""The options build and serve share: declared once, resolved once."""

from pathlib import Path

import click
import pytest
import rasterio
from click.testing import CliRunner

from geoheat.checks import available_cores
from geoheat.cli import cli
from geoheat.cli_options import build_options, reading_settings
from geoheat.errors import ParameterError

# Shared flags whose meaning differs by command: their help (or choices) may too.
TOLD_APART = {"style", "verbose", "quiet", "extent"}


def declared(param):
    choices = getattr(param.type, "choices", None)
    return (param.opts, param.secondary_opts, param.default, param.multiple, param.nargs,
            getattr(param, "is_flag", None), param.metavar, param.type.name, choices,
            param.help, param.show_default)


def test_build_and_serve_declare_their_common_options_alike():
    build, serve = (cli.commands[name] for name in ("build", "serve"))
    serves = {p.name: p for p in serve.params}
    # (their INPUTS differ: build's may be fsspec URLs, kept as strings)
    common = [p for p in build.params if p.name in serves and isinstance(p, click.Option)]
    assert len(common) == 22  # 18 options and the 4 privacy ones
    for param in common:
        if param.name in TOLD_APART:
            assert param.opts == serves[param.name].opts
            assert param.default == serves[param.name].default
        else:
            assert declared(param) == declared(serves[param.name]), param.name
    assert build.params[[p.name for p in build.params].index("extent")].type.choices \
        == ("auto", "all", "regions")
    assert serves["extent"].type.choices == ("auto", "all")


def test_reading_settings_are_the_command_lines_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOHEAT_CACHE_DIR", str(tmp_path / "cache"))
    assert reading_settings(None, False, None, "512M") == {
        "parse_cache": tmp_path / "cache", "jobs": available_cores(),
        "max_file_size": 512 * 2**20}
    assert reading_settings(tmp_path / "mine", True, 1, "2k") == {
        "parse_cache": None, "jobs": 1, "max_file_size": 2048}
    options = build_options([], parse_cache=tmp_path / "mine", no_cache=False, jobs=1,
                            max_file_size="1G", zoom=12)
    assert options.inputs == (Path("gpx"),) and options.zoom == 12
    assert options.reading.parse_cache == tmp_path / "mine"
    assert options.reading.max_file_size == 2**30
    with pytest.raises(ParameterError, match="jobs must be a whole number"):
        build_options(["gpx"], parse_cache=None, no_cache=True, jobs=0, max_file_size="1M")


def test_an_explicit_scaling_wins_over_no_cdist(tmp_path, write_gpx):
    write_gpx("a.gpx", [(14.50, 46.05), (14.501, 46.051), (14.502, 46.052)])
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "a.gpx"), "-o",
                                      str(tmp_path / "h.png"), "--zoom", "14", "--basemap",
                                      "none", "--no-cdist", "--scaling", "cdf"])
    assert result.exit_code == 0, result.stderr
    with rasterio.open(tmp_path / "h-heat.tif") as src:
        assert src.tags()["SCALING"] == "cdf"
