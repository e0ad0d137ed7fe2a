"""Strava bulk exports, .gz/.zip, FIT and TCX, activity types and duplicates."""

import gzip
import re
import shutil
import zipfile
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio

import geoheat
from geoheat import formats
from geoheat.projection import unproject
from geoheat.reading import parse_file
from geoheat.samples import gpx_document
from geoheat.source_bytes import Source
from geoheat.sources import find_sources

from .conftest import shared_folder

FIT_TCX_EXPECTED = {
    # file: (kept or skipped, what the message says)
    "Settings.fit": ("skipped", "not an activity"),
    "sample-activity-indoor-trainer.fit": ("skipped", "no positions"),
    "activity-unexpected-eof.fit": ("partial", "broken off"),
    "strava-android-app-201.10-b1218918.fit": ("partial", "broken off"),
}


def tcx_document(points, start, sport="Biking"):
    """A TCX activity with one track of (lon, lat) points, one a second."""
    rows = "".join(
        f"<Trackpoint><Time>{start.strftime('%Y-%m-%dT%H:%M:')}{i % 60:02d}Z</Time>"
        f"<Position><LatitudeDegrees>{lat}</LatitudeDegrees>"
        f"<LongitudeDegrees>{lon}</LongitudeDegrees></Position></Trackpoint>"
        for i, (lon, lat) in enumerate(points))
    return ('<?xml version="1.0"?><TrainingCenterDatabase xmlns='
            '"http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"><Activities>'
            f'<Activity Sport="{sport}"><Id>{start.strftime("%Y-%m-%dT%H:%M:%SZ")}</Id>'
            f'<Lap StartTime="{start.isoformat()}"><Track>{rows}</Track></Lap></Activity>'
            '</Activities></TrainingCenterDatabase>')


def fit_positions(path):
    """(lon, lat) of a FIT file's records, decoded here independently of geoheat."""
    from garmin_fit_sdk import Decoder, Stream

    messages, _ = Decoder(Stream.from_file(str(path))).read()
    pairs = [(r["position_long"], r["position_lat"]) for r in messages.get("record_mesgs", [])
             if r.get("position_lat") is not None and r.get("position_long") is not None]
    return np.array(pairs, dtype=float) * 180 / 2**31


def test_every_fit_and_tcx_file_is_read_or_skipped_as_described():
    folder = shared_folder("fit-tcx")
    files = sorted(folder.iterdir())
    assert len(files) == 16
    for path in files:
        parsed = parse_file(path)
        kind, words = FIT_TCX_EXPECTED.get(path.name, ("kept", None))
        if kind == "skipped":
            assert parsed.error and words in parsed.error and parsed.points == 0, path.name
            continue
        assert parsed.error is None and parsed.points > 0, (path.name, parsed.error)
        if kind == "partial":
            assert words in parsed.note, path.name
        else:
            assert parsed.note is None, (path.name, parsed.note)
        lonlat = unproject(parsed.xy)
        if path.suffix == ".fit":
            expected = fit_positions(path)
        else:  # the file's own <LatitudeDegrees>/<LongitudeDegrees>, read by a regex
            text = path.read_text()
            expected = np.array([(float(lon), float(lat)) for lat, lon in re.findall(
                r"<LatitudeDegrees>([^<]+)</LatitudeDegrees>\s*"
                r"<LongitudeDegrees>([^<]+)</LongitudeDegrees>", text)])
        np.testing.assert_allclose(lonlat, expected, atol=1e-7, err_msg=path.name)
        assert parsed.activity_type in formats.TYPES, path.name


def test_fit_sport_and_start(tmp_path):
    folder = shared_folder("fit-tcx")
    run = parse_file(folder / "garmin-fenix-5-run.fit")
    assert run.activity_type == "Run" and run.start.year == 2017
    bike = parse_file(folder / "garmin-edge-820-bike.fit")
    assert bike.activity_type == "Ride"


@pytest.mark.parametrize("name, expected", [
    ("Ride", "Ride"), ("cycling", "Ride"), ("biking", "Ride"), ("1", "Ride"), ("9", "Run"),
    ("running", "Run"), ("Virtual Ride", "VirtualRide"), ("E-Bike Ride", "EBikeRide"),
    ("hiking", "Hike"), ("Biking", "Ride"), ("curling", "Other"), (None, None)])
def test_activity_type_vocabulary(name, expected):
    assert formats.activity_type(name) == expected


RIDE = [(14.50 + 0.0005 * i, 46.05 + 0.0002 * i) for i in range(60)]
RUN = [(14.52 + 0.0003 * i, 46.06 - 0.0002 * i) for i in range(60)]
WALK = [(14.49 - 0.0002 * i, 46.04 + 0.0001 * i) for i in range(40)]


def on(year, month=5):
    return datetime(year, month, 3, 7, 0, tzinfo=timezone.utc)


@pytest.fixture
def plain(tmp_path):
    """The same three activities as plain files: GPX, TCX and GPX."""
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "ride.gpx").write_text(gpx_document([np.array(RIDE)], start=on(2024)))
    (folder / "run.tcx").write_text(tcx_document(RUN, on(2023), sport="Running"))
    (folder / "walk.gpx").write_text(gpx_document([np.array(WALK)], start=on(2024, 8)))
    return folder


def make_export(plain, zip_path):
    """A Strava-style export zip of the plain files: gzipped, listed in activities.csv."""
    rows = [("1", "May 3, 2024, 7:00:00 AM", "Ride", "activities/1.gpx.gz", "ride.gpx"),
            ("2", "May 3, 2023, 7:00:00 AM", "Run", "activities/2.tcx.gz", "run.tcx"),
            ("3", "Aug 3, 2024, 7:00:00 AM", "Walk", "activities/3.gpx", "walk.gpx"),
            ("4", "Aug 4, 2024, 7:00:00 AM", "Workout", "", None)]  # no file: manual entry
    with zipfile.ZipFile(zip_path, "w") as archive:
        lines = ['Activity ID,Activity Date,Activity Name,Activity Type,Filename']
        for ident, date, kind, filename, source in rows:
            lines.append(f'{ident},"{date}",Morning,{kind},{filename}')
            if source:
                data = (plain / source).read_bytes()
                archive.writestr(filename, gzip.compress(data) if filename.endswith(".gz")
                                 else data)
        archive.writestr("activities.csv", "\n".join(lines) + "\n")
        archive.writestr("activities/999.gpx", "not listed, so not read")
    return zip_path


def heat_of(inputs, out, **kwargs):
    result = geoheat.build(inputs, out, zoom=14, **kwargs)
    with rasterio.open(out.with_name(f"{out.stem}-heat.tif")) as src:
        return src.read(1), src.transform, result


def test_export_zip_gives_the_same_heat_as_plain_files(tmp_path, plain):
    export = make_export(plain, tmp_path / "export.zip")
    sources = find_sources([export])
    assert [(s.member, s.unread) for s in sources] == [
        ("activities/1.gpx.gz", None), ("activities/2.tcx.gz", None), ("activities/3.gpx", None),
        ("activities/999.gpx", "in the export but not listed in its activities.csv")]
    assert [s.activity_type for s in sources] == ["Ride", "Run", "Walk", None]
    zipped, transform, result = heat_of([export], tmp_path / "z.png")
    flat, flat_transform, _ = heat_of([plain], tmp_path / "p.png")
    assert transform == flat_transform
    np.testing.assert_array_equal(zipped, flat)
    assert result.types == {"Ride": 1, "Run": 1, "Walk": 1}
    assert result.formats == {"gpx": 2, "tcx": 1}
    # Unpacked, the export folder reads the same through its activities.csv.
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(export) as archive:
        archive.extractall(unpacked)
    np.testing.assert_array_equal(heat_of([unpacked], tmp_path / "u.png")[0], flat)


def test_type_and_year_select_activities(tmp_path, plain):
    export = make_export(plain, tmp_path / "export.zip")
    rides = heat_of([export], tmp_path / "r.png", types=["Ride"])[2]
    assert rides.types == {"Ride": 1} and rides.left_out == {"other types": 2}
    both = heat_of([export], tmp_path / "b.png", types=["cycling", "Run"])[2]
    assert both.types == {"Ride": 1, "Run": 1}
    in_2024 = heat_of([export], tmp_path / "y.png", years=[2024])[2]
    assert in_2024.types == {"Ride": 1, "Walk": 1}
    # Without activities.csv the file's own sport names the type: TCX Sport="Running".
    assert heat_of([plain], tmp_path / "t.png", types=["Run"])[2].types == {"Run": 1}


def test_the_same_activity_twice_is_counted_once(tmp_path, plain):
    twice = tmp_path / "twice"
    shutil.copytree(plain, twice)
    (twice / "ride-again.tcx").write_text(tcx_document(RIDE, on(2024)))  # the ride, as TCX
    once, _, single = heat_of([plain], tmp_path / "a.png")
    doubled, _, result = heat_of([twice], tmp_path / "b.png")
    assert result.duplicates == 1 and single.duplicates == 0
    np.testing.assert_array_equal(doubled, once)
    # A different ride at the same time elsewhere is not a duplicate.
    far = [(lon + 0.05, lat) for lon, lat in RIDE]
    (twice / "elsewhere.tcx").write_text(tcx_document(far, on(2024)))
    assert geoheat.build([twice], tmp_path / "c.png", extent="all").duplicates == 1


def test_a_corrupt_member_in_the_zip_is_skipped(tmp_path, plain):
    export = make_export(plain, tmp_path / "export.zip")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(export) as old, zipfile.ZipFile(broken, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "activities/2.tcx.gz":
                data = data[:20] + b"\x00" * 30  # gzip stream cut and garbled
            new.writestr(item, data)
    warnings = []
    result = geoheat.build([broken], tmp_path / "h.png", on_warning=warnings.append)
    assert result.types == {"Ride": 1, "Walk": 1}
    assert [name.rsplit(":", 1)[-1] for name, _ in result.skipped] == [
        "activities/2.tcx.gz", "activities/999.gpx"]  # damaged; not listed
    assert len(warnings) == 2 and "damaged compressed data" in warnings[0]
    assert warnings[1].endswith("999.gpx: in the export but not listed in its activities.csv")


def test_folder_scan_finds_every_format(tmp_path, plain):
    (plain / "ride.gpx.gz").write_bytes(gzip.compress((plain / "ride.gpx").read_bytes()))
    (plain / "notes.txt").write_text("x")
    names = [s.path.name for s in find_sources([plain])]
    assert names == ["ride.gpx", "ride.gpx.gz", "run.tcx", "walk.gpx"]
    assert [s.path.name for s in find_sources([plain], "*.gpx")] == ["ride.gpx", "walk.gpx"]
    assert Source(plain / "x.fit.gz").format == "fit"


def test_truncated_tcx_keeps_what_was_read(tmp_path):
    text = tcx_document(RUN, on(2023))
    (tmp_path / "cut.tcx").write_text(text[: len(text) * 2 // 3])
    parsed = parse_file(tmp_path / "cut.tcx")
    assert parsed.error is None and 0 < parsed.points < len(RUN)
    assert "broken off" in parsed.note


def test_an_old_export_builds_like_the_plain_files(tmp_path, plain):
    # Exports before ~2019: lowercase header, ISO dates; once refused ("no file matches").
    rows = [("1", "2024-05-03 07:00:00", "Ride", "activities/1.gpx.gz", "ride.gpx"),
            ("2", "2023-05-03 07:00:00", "Run", "activities/2.TCX.gz", "run.tcx"),
            ("3", "2024-08-03 07:00:00", "Walk", "activities/3.gpx", "walk.gpx")]
    export = tmp_path / "old.zip"
    with zipfile.ZipFile(export, "w") as archive:
        lines = ["id,date,name,type,description,elapsed_time,distance,commute,gear,filename"]
        for ident, date, kind, filename, source in rows:
            lines.append(f"{ident},{date},Morning,{kind},,1800,5000,false,,{filename}")
            data = (plain / source).read_bytes()
            member = f"export_1/{filename.lower()}"  # the zip's own folder; other case
            archive.writestr(member, gzip.compress(data) if member.endswith(".gz") else data)
        archive.writestr("export_1/activities.csv", "\n".join(lines) + "\n")
    zipped, transform, result = heat_of([export], tmp_path / "z.png")
    flat, flat_transform, _ = heat_of([plain], tmp_path / "p.png")
    assert transform == flat_transform
    np.testing.assert_array_equal(zipped, flat)
    assert result.types == {"Ride": 1, "Run": 1, "Walk": 1}
    in_2023 = heat_of([export], tmp_path / "y.png", years=[2023])[2]
    assert in_2023.types == {"Run": 1}


@pytest.mark.parametrize("verbose", [False, True])
def test_every_file_an_export_lists_but_lacks_is_named_in_warnings_and_report(
        tmp_path, plain, verbose):
    import json

    export = make_export(plain, tmp_path / "export.zip")
    lacking = tmp_path / "lacking.zip"
    with zipfile.ZipFile(export) as old, zipfile.ZipFile(lacking, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "activities.csv":  # four more listed, not in the zip
                data += "".join(f'{n},"May 3, 2024, 7:00:00 AM",Morning,Ride,activities/{n}.gpx\n'
                                for n in range(5, 9)).encode()
            new.writestr(item, data)
    warnings = []
    result = geoheat.build([lacking], tmp_path / "h.png", on_warning=warnings.append,
                           report=tmp_path / "r.json", verbose=verbose)
    assert result.types == {"Ride": 1, "Run": 1, "Walk": 1}
    why = "listed in activities.csv but not in the export"
    names = [f"{lacking}:activities/{n}.gpx" for n in range(5, 9)]
    if verbose:
        assert [w for w in warnings if why in w] == [f"skipped {n}: {why}" for n in names]
    else:
        assert (f"skipped 4 files: {why}: {', '.join(names[:3])} and 1 more "
                "(--verbose lists them)") in warnings
    files = json.loads((tmp_path / "r.json").read_text())["files"]
    assert [(f["path"], f["status"], f["reason"], f["type"]) for f in files
            if f["reason"] == why] == [(n, "skipped", why, "Ride") for n in names]
    assert [(f["path"], f["reason"]) for f in files if "999" in f["path"]] == [
        (f"{lacking}:activities/999.gpx", "in the export but not listed in its activities.csv")]


def test_two_exports_in_a_folder_and_a_zip_in_a_zip_are_read_or_named(tmp_path, plain):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    make_export(plain, downloads / "export_1.zip")
    outer = downloads / "old.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.write(downloads / "export_1.zip", "export_2.zip")
    warnings = []
    result = geoheat.build([downloads], tmp_path / "h.png", on_warning=warnings.append)
    assert result.types == {"Ride": 1, "Run": 1, "Walk": 1}  # was: "no file matches"
    assert f"skipped {outer}:export_2.zip: a zip inside the zip, not read (unzip the outer " \
           "zip and give its folder)" in warnings


def test_two_members_of_one_name_are_both_drawn(tmp_path):
    path = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("activities/a.gpx", gpx_document([np.array(RIDE)], start=on(2024)))
            archive.writestr("activities/a.gpx", gpx_document([np.array(RUN)], start=on(2023)))
    result = geoheat.build([path], tmp_path / "h.tif", zoom=14, png=False, extent="all")
    assert result.activities == 2 and result.points_used == len(RIDE) + len(RUN)
