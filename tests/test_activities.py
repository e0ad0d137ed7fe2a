"""Selecting activities: duplicates (by content, by either start), types, virtual rides."""

import gzip
import json
import zipfile
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from click.testing import CliRunner

from geoheat import formats
from geoheat.activities import drop_duplicates, same_track, select_activities
from geoheat.cache import ParsedFile
from geoheat.cli import cli
from geoheat.projection import project
from geoheat.reading import parse_file, read_files
from geoheat.samples import gpx_document
from geoheat.sources import find_sources
from geoheat.summary import summarize

from .conftest import straight

START = datetime(2020, 6, 1, 19, 1, 19, tzinfo=timezone.utc)
LOOP = straight(14.50, 46.05, 14.53, 46.06)  # ~2.5 km, ~50 points


def timed_gpx(points, start, kind=None, every=5):
    times = [[start + timedelta(seconds=every * i) for i in range(len(points))]]
    return gpx_document([np.asarray(points)], activity_type=kind, times=times)


def export_zip(path, rows, files):
    """A Strava export zip: activities.csv (rows: id, date, type, file) and its files."""
    header = "Activity ID,Activity Date,Activity Name,Activity Type,Filename"
    lines = [header] + [f'{i},"{date:%b %d, %Y, %I:%M:%S %p}",x,{kind},{name}'
                        for i, date, kind, name in rows]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("activities.csv", "\n".join(lines) + "\n")
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def build(*args):
    return CliRunner().invoke(cli, ["build", *map(str, args), "--basemap", "none"])


def report_of(tmp_path, *args):
    result = build(*args, "-o", tmp_path / "h.png", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    return json.loads((tmp_path / "r.json").read_text()), result


# --- the same activity twice -------------------------------------------------------


def test_an_export_and_its_unzipped_copy_are_one_activity_63_s_apart(tmp_path):
    """The issue's case: the CSV dates the ride 63 s after its file's own start, and the
    unzipped copy (gzipped as Strava ships it) has only the file's start."""
    data = gzip.compress(timed_gpx(LOOP, START).encode())
    export = export_zip(tmp_path / "export.zip",
                        [(7, START + timedelta(seconds=63), "Virtual Ride",
                          "activities/7.gpx.gz")], {"activities/7.gpx.gz": data})
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "7.gpx.gz").write_bytes(data)
    report, _ = report_of(tmp_path, export, tmp_path / "output", "--type", "VirtualRide")
    assert report["activities"]["drawn"] == 1 and report["activities"]["duplicates"] == 1
    # The copy without the CSV said Ride; the activity keeps the CSV's VirtualRide.
    assert report["activities"]["by_type"] == {"VirtualRide": 1}


def test_identical_tracks_are_one_activity_with_or_without_times(tmp_path):
    (tmp_path / "a.gpx").write_text(timed_gpx(LOOP, START))
    (tmp_path / "b.gpx").write_text(gpx_document([np.asarray(LOOP)]))  # no times
    (tmp_path / "c.gpx").write_text(gpx_document([np.asarray(LOOP)]))
    # The same places at other times (a day later): another activity.
    (tmp_path / "d.gpx").write_text(timed_gpx(LOOP, START + timedelta(days=1)))
    parsed = read_files(find_sources([tmp_path]))
    kept, result = select_activities(parsed)
    assert sorted(a.name[-5:] for a in kept) == ["a.gpx", "d.gpx"] and result.duplicates == 2


def test_the_files_own_start_matches_where_the_index_date_does_not(tmp_path):
    """Not the same bytes (the copy has one point less): matched on the file's own start,
    which the export's index moved by 90 s."""
    (tmp_path / "a.gpx").write_text(timed_gpx(LOOP, START))
    (tmp_path / "b.gpx").write_text(timed_gpx(LOOP[:-1], START))
    sources = find_sources([tmp_path])
    parsed = read_files(sources)
    moved = [parsed[0]._replace(start=START + timedelta(seconds=90), own_start=START),
             parsed[1]]
    kept, repeats = drop_duplicates(moved)
    assert [a.name for a in kept] == [parsed[0].name]  # the one with more points
    assert [(r.name, first.name) for r, first in repeats] == [(parsed[1].name, parsed[0].name)]
    # Without the file's own start the two are 90 s apart: two activities.
    kept, repeats = drop_duplicates([moved[0]._replace(own_start=None), moved[1]])
    assert len(kept) == 2 and not repeats


def fake(name, lonlat, start, kind=None):
    """A ParsedFile of (lon, lat) points, as read_files makes them."""
    xy = project(np.asarray(lonlat, dtype=float))
    offsets = np.array([0, len(xy)], dtype=np.int64)
    return ParsedFile(name, xy, offsets, start, activity_type=kind,
                      summary=summarize(xy, offsets))


def brute_force_groups(activities):
    """Comparing every pair: most points first, each activity not yet claimed keeps those
    it matches (start within 60 s by either start, same_track) not yet claimed."""
    def starts(a):
        return {a.start, a.own_start} - {None}

    claimed, groups = set(), []
    for i in sorted(range(len(activities)), key=lambda i: (-activities[i].points, i)):
        if i in claimed:
            continue
        claimed.add(i)
        group = {i}
        for j in range(len(activities)):
            a, b = activities[i], activities[j]
            close = any(abs((s - t).total_seconds()) <= 60 for s in starts(a) for t in starts(b))
            if j not in claimed and close and same_track(a.summary, b.summary):
                claimed.add(j)
                group.add(j)
        groups.append(sorted(group))
    return sorted(groups)


def test_candidates_by_minute_and_place_find_what_comparing_every_pair_finds():
    """Many activities in one start minute, some near one place: the bucketed search
    finds the same groups as comparing every pair (lengths of 3.1, 3.25 and 3.4 km:
    neighbours match, the ends do not)."""
    rng = np.random.default_rng(7)
    activities = []
    for i in range(300):
        lon, lat = 14.5 + rng.choice([0, 0.001, 0.002, 0.05]), 46.05 + rng.choice([0, 0.0015])
        length = rng.choice([0.04, 0.042, 0.044, 0.08])
        n = int(rng.integers(5, 30))
        points = np.column_stack([np.linspace(lon, lon + length, n), np.full(n, lat)])
        start = START + timedelta(seconds=int(rng.integers(0, 150)))
        own = START + timedelta(seconds=int(rng.integers(0, 600))) if i % 5 == 0 else None
        activities.append(fake(f"{i}.gpx", points, start)._replace(own_start=own))
    kept, repeats = drop_duplicates(activities)
    index = {a.name: i for i, a in enumerate(activities)}
    groups = {}
    for a in kept:
        groups[a.name] = {index[a.name]}
    for repeat, first in repeats:
        groups[first.name].add(index[repeat.name])
    assert sorted(sorted(g) for g in groups.values()) == brute_force_groups(activities)
    assert 1 < len(kept) < len(activities)  # both kinds happen


def test_a_chain_of_near_matches_is_not_one_activity():
    """3.1 km matches 3.25 km, which matches 3.4 km; 3.1 and 3.4 km do not match: the
    longest-recorded (most points) keeps what matches it, the other stays."""
    def loop(name, km, points):
        lon = np.linspace(14.5, 14.5 + km / 77.2, points)
        return fake(name, np.column_stack([lon, np.full(points, 46.05)]), START)

    kept, repeats = drop_duplicates([loop("a", 3.1, 40), loop("b", 3.25, 30),
                                     loop("c", 3.4, 20)])
    assert [a.name for a in kept] == ["a", "c"]
    assert [(r.name, first.name) for r, first in repeats] == [("b", "a")]


def test_one_start_minute_in_many_places_is_many_activities():
    """6,000 files a converter stamped with one start minute, each somewhere else."""
    activities = [fake(f"{i}.gpx", [(10 + i * 0.01, 46.0), (10 + i * 0.01, 46.001)], START)
                  for i in range(6000)]
    kept, repeats = drop_duplicates(activities)
    assert len(kept) == 6000 and not repeats


def test_merged_copies_keep_the_most_specific_type():
    here = [(14.5, 46.05), (14.51, 46.05)]
    for kinds, expected in [(["Ride", "VirtualRide"], "VirtualRide"),
                            (["VirtualRide", "Ride"], "VirtualRide"),
                            ([None, "Run"], "Run"), (["Other", "Walk"], "Walk"),
                            (["Ride", "Run"], "Ride")]:
        copies = [fake(f"{i}.gpx", here, START, kind) for i, kind in enumerate(kinds)]
        kept, repeats = drop_duplicates(copies)
        assert [a.activity_type for a in kept] == [expected], kinds
        assert len(repeats) == 1


# --- types -------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("16", "Swim"), ("17", "VirtualRide"), ("18", "EBikeRide"), ("11", "Workout"),
    ("29", "WeightTraining"), ("generic", "Other"), ("training", "Workout"),
    ("virtual_ride", "VirtualRide"), ("Trail Run", "Run"), ("  ", None)])
def test_strava_gpx_codes_and_fit_sport_names(name, expected):
    assert formats.activity_type(name) == expected


def test_a_zwift_gpx_typed_17_is_a_virtual_ride_left_out_unless_asked(tmp_path):
    (tmp_path / "zwift.gpx").write_text(timed_gpx(straight(166.95, -11.64, 166.97, -11.62),
                                                  START, kind="17"))
    (tmp_path / "swim.gpx").write_text(timed_gpx(LOOP, START, kind="16"))
    report, result = report_of(tmp_path, tmp_path)
    assert report["activities"]["by_type"] == {"Swim": 1}
    assert report["activities"]["left_out"] == {
        "virtual: --type VirtualRide,VirtualRun draws them": 1}
    assert "1 left out (virtual: --type VirtualRide,VirtualRun draws them)" in result.stderr
    report, _ = report_of(tmp_path, tmp_path, "--type", "VirtualRide")
    assert report["activities"]["by_type"] == {"VirtualRide": 1}
    assert report["activities"]["left_out"] == {"other types": 1}
    lon_min, lat_min, lon_max, lat_max = report["bounds"]
    assert lon_min < 166.96 < lon_max and lat_min < -11.63 < lat_max  # Watopia


@pytest.mark.parametrize("name", ["Foo", "Rideing", "untyped2"])
def test_an_unknown_type_is_refused_with_the_known_ones(tmp_path, name):
    (tmp_path / "a.gpx").write_text(timed_gpx(LOOP, START))
    result = build(tmp_path, "-o", tmp_path / "h.png", "--type", f"Ride,{name}")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and f"unknown activity type {name!r}" in line
    assert "Ride, Run, Walk" in line and "Workout" in line and "untyped" in line
    assert not (tmp_path / "h.png").exists()


def test_untyped_and_other_are_what_they_say(tmp_path):
    """`Other`: a sport Strava has no type for; `untyped`: none named. The report, the
    summary and --type use the same two words."""
    (tmp_path / "curling.gpx").write_text(timed_gpx(LOOP, START, kind="curling"))
    (tmp_path / "none.gpx").write_text(timed_gpx(LOOP[::-1], START + timedelta(hours=2)))
    (tmp_path / "work.gpx").write_text(timed_gpx(LOOP, START + timedelta(hours=4),
                                                 kind="Workout"))
    report, result = report_of(tmp_path, tmp_path)
    assert report["activities"]["by_type"] == {"Other": 1, "untyped": 1, "Workout": 1}
    assert "1 untyped" in result.stderr.splitlines()[-1]
    report, _ = report_of(tmp_path, tmp_path, "--type", "untyped")
    assert report["activities"]["by_type"] == {"untyped": 1}
    assert report["activities"]["left_out"] == {"other types": 2}
    report, _ = report_of(tmp_path, tmp_path, "--type", "Other")
    assert report["activities"]["by_type"] == {"Other": 1}
    assert report["activities"]["left_out"] == {"other types": 1, "untyped": 1}
    report, _ = report_of(tmp_path, tmp_path, "--type", "workout")
    assert report["activities"]["by_type"] == {"Workout": 1}


def test_parse_file_keeps_a_zwift_gpx_type(tmp_path):
    path = tmp_path / "z.gpx"
    path.write_text(timed_gpx(LOOP, START, kind="17"))
    assert parse_file(path).activity_type == "VirtualRide"


def test_a_real_fit_in_an_export_and_unzipped_beside_it_is_drawn_once(tmp_path):
    """A real Garmin ride, gzipped in an export whose CSV dates it 63 s after the FIT
    session and types it Virtual Ride, and gunzipped beside it as the owner keeps it."""
    from .conftest import shared_folder

    ride = shared_folder("fit-tcx") / "garmin-edge-820-bike.fit"
    own = parse_file(ride).start
    export = export_zip(tmp_path / "export.zip",
                        [(1, own + timedelta(seconds=63), "Virtual Ride",
                          "activities/1.fit.gz")],
                        {"activities/1.fit.gz": gzip.compress(ride.read_bytes())})
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "1.fit").write_bytes(ride.read_bytes())
    report, result = report_of(tmp_path, export, tmp_path / "output", "--type", "VirtualRide")
    assert report["activities"]["drawn"] == 1 and report["activities"]["duplicates"] == 1
    assert report["activities"]["by_type"] == {"VirtualRide": 1}
    assert "1 duplicate dropped" in result.stderr.splitlines()[-1]
    # By default the ride, virtual by its CSV, is left out, and said.
    result = build(export, tmp_path / "output", "-o", tmp_path / "d.png")
    assert result.exit_code == 2
    assert ("nothing to draw: 2 files found, 2 with track points, 1 left out (virtual: "
            "--type VirtualRide,VirtualRun draws them)") in result.stderr
