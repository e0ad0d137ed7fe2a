"""Reading GPX files: segments, start times, routes and waypoints, unreadable files."""

from datetime import datetime, timezone

import numpy as np
import pytest

from geoheat import GPXError, InputError, find_sources, read_gpx
from geoheat.gpx import read_gpx_data, start_time

START = datetime(2024, 5, 3, 7, 0, tzinfo=timezone.utc)


def test_segments_are_kept_apart(write_gpx):
    path = write_gpx("two.gpx", [(14.5, 46.0), (14.6, 46.1)], [(15.0, 47.0)] * 3)
    activity = read_gpx(path)
    assert [s.shape for s in activity.segments] == [(2, 2), (3, 2)]
    assert activity.segments[0][1].tolist() == [14.6, 46.1]
    assert activity.points == 5


def test_start_time_is_the_first_trackpoint_not_the_metadata(write_gpx):
    # Converters write when they converted into <metadata><time>: the points say when.
    later = [[datetime(2025, 1, 1, tzinfo=timezone.utc)] * 2]
    path = write_gpx("meta.gpx", [(1, 1), (2, 2)], start=START, times=later)
    assert read_gpx(path).start == later[0][0]


def test_start_time_from_metadata_when_no_point_has_one(write_gpx):
    path = write_gpx("meta.gpx", [(1, 1), (2, 2)], start=START)
    activity = read_gpx(path)
    assert activity.start == START and activity.times is None


def test_start_time_from_first_trackpoint(write_gpx):
    times = [[datetime(2023, 6, 1, 5, 4, 3, tzinfo=timezone.utc), START]]
    path = write_gpx("pts.gpx", [(1, 1), (2, 2)], times=times)
    assert read_gpx(path).start == times[0][0]


def test_start_time_gpx10_header_and_namespaced_tags():
    gpx10 = b'<gpx version="1.0"><time>2019-02-03T04:05:06Z</time><trk><trkseg>'
    assert start_time(gpx10).year == 2019
    prefixed = b'<g:gpx><g:trk><g:trkseg><g:trkpt lat="1" lon="2"><g:time>2021-07-01T00:00:00.5+02:00</g:time></g:trkpt>'
    assert start_time(prefixed).isoformat() == "2021-07-01T00:00:00.500000+02:00"
    assert start_time(b'<gpx><trk><trkseg><trkpt lat="1" lon="2"></trkpt>') is None


def test_routes_and_waypoints_are_counted_not_read(tmp_path):
    path = tmp_path / "route.gpx"
    path.write_text(
        '<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        '<wpt lat="1" lon="1"/><wpt lat="2" lon="2"/>'
        '<rte><rtept lat="1" lon="1"/><rtept lat="2" lon="2"/></rte></gpx>'
    )
    activity = read_gpx(path)
    assert (activity.segments, activity.routes, activity.waypoints) == ([], 1, 2)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b"name,lat,lon\nx,1,2\n", "not a GPX file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a GPX file"),
        (b'<gpx version="1.1"><trk><trkseg><trkpt lat="1" lon="2"></trkseg></trk></gpx>',
         "broken or truncated XML"),
        (b'<?xml version="1.0"?><gpx version="1.1"><trk><trkseg><trkpt lat="1" lon="2">',
         "broken or truncated XML"),
    ],
)
def test_unreadable_files_raise_one_line_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.gpx"
    path.write_bytes(content)
    with pytest.raises(GPXError) as err:
        read_gpx(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_input_files_are_not_modified(write_gpx):
    path = write_gpx("keep.gpx", [(1, 1), (2, 2)])
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_gpx(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_find_sources(tmp_path, write_gpx):
    a = write_gpx("a-Ride.gpx", [(1, 1)])
    b = write_gpx("b-Run.gpx", [(1, 1)])
    nested = write_gpx("c-Ride.gpx", [(1, 1)], folder=tmp_path / "sub")
    (tmp_path / "notes.txt").write_text("x")

    def paths(*args):
        return [source.path for source in find_sources(*args)]

    # Folders are searched recursively; a pattern matches names at any depth.
    assert paths([tmp_path]) == [a, b, nested]
    assert paths([tmp_path], "*Ride*.gpx") == [a, nested]
    assert paths([tmp_path], "**/*Ride*.gpx") == [a, nested]
    assert paths([tmp_path], "sub/*.gpx") == [nested]  # a '/' matches the relative path
    assert paths([b, tmp_path, b]) == [b, a, nested]  # each once, in given order
    with pytest.raises(InputError, match="no such file or folder"):
        find_sources([tmp_path / "missing"])
    with pytest.raises(InputError, match="no file matches"):
        find_sources([tmp_path], "*.fit")


def _gpx(points: str, head: str = "") -> bytes:
    return ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            f'xmlns="http://www.topografix.com/GPX/1/1">{head}<trk><trkseg>{points}'
            '</trkseg></trk></gpx>').encode()


def _points(times, ele=True):
    """trkpt elements 50 m apart; times: one text (or None) per point."""
    return "".join(
        f'<trkpt lat="{46.05 + i * 0.00045:.6f}" lon="14.5">'
        + (f"<ele>{300 + i}</ele>" if ele else "")
        + (f"<time>{t}</time>" if t is not None else "") + "</trkpt>"
        for i, t in enumerate(times))


_WAYPOINTS = "".join(f'<wpt lat="46.0" lon="14.{i:04d}"><name>w{i}</name></wpt>'
                     for i in range(2000))  # ~100 KB: the track starts past HEAD_BYTES
_TIMES = [f"2024-05-03T07:00:{i:02d}Z" for i in range(6)]
_COMMENTED = "<!-- <trkpt lat='1' lon='1'><time>2021-01-01T00:00:00Z</time></trkpt> -->"


@pytest.mark.parametrize("data", [
    _gpx(_points(_TIMES)),  # Garmin-style: the start from the first point, no pairing
    _gpx(_points([t.replace("Z", ".250Z") for t in _TIMES], ele=False)),
    _gpx(_points([t.replace("Z", "+08:00") for t in _TIMES])),  # a zone: kept as read
    _gpx(_points([t.replace("Z", ".123456789Z") for t in _TIMES])),  # beyond microseconds
    _gpx(_points([None] + _TIMES[1:])),  # the first point has no time
    _gpx(_points(["2016-12-31T23:59:60Z"] + _TIMES[1:])),  # a leap second
    _gpx(_points(["1970-01-01T00:00:00Z"] * 3)),  # an unset clock: implausible
    _gpx(_points([None] * 3), head="<metadata><time>2020-01-01T00:00:00Z</time></metadata>"),
    _gpx(_points(_TIMES), head=_WAYPOINTS),  # the first point beyond HEAD_BYTES
    # Times that do not pair (a point in a comment): the start is found by start_time,
    # which within HEAD_BYTES takes the first <trkpt>'s time and beyond them the header's.
    _gpx(_COMMENTED + _points(_TIMES)),
    _gpx(_COMMENTED + _points(_TIMES),
         head="<metadata><time>2020-01-01T00:00:00Z</time></metadata>" + _WAYPOINTS),
], ids=["garmin", "millis", "zone", "nanoseconds", "untimed-first", "leap-second", "1970",
        "metadata-only", "far-track", "unpaired", "unpaired-far-track"])
def test_the_start_is_the_same_whether_times_are_paired_or_not(data):
    paired = read_gpx_data(data, "t.gpx")[0]
    asked = []
    for times in (False, lambda segments: asked.append(segments) or False,
                  lambda segments: True):
        lazy = read_gpx_data(data, "t.gpx", times=times)[0]
        assert (lazy.start, repr(lazy.start), lazy.time_note) == (
            paired.start, repr(paired.start), paired.time_note)
        assert lazy.segments[0].tolist() == paired.segments[0].tolist()
        if lazy.times is not None:  # paired (asked for, or the start needed them): the same
            np.testing.assert_array_equal(np.concatenate(lazy.times),
                                          np.concatenate(paired.times))
    assert not asked or asked[0][0].tolist() == paired.segments[0].tolist()


def test_garmin_style_times_are_paired_only_when_asked_for():
    data = _gpx(_points(_TIMES))
    assert read_gpx_data(data, "t.gpx", times=False)[0].times is None
    assert read_gpx_data(data, "t.gpx", times=lambda segments: False)[0].times is None
    wanted = read_gpx_data(data, "t.gpx", times=lambda segments: True)[0]
    assert wanted.times[0].tolist() == [START.timestamp() + i for i in range(6)]
    assert wanted.start == START and wanted.times[0][0] == wanted.start.timestamp()


def _gpx_with_latitudes(texts):
    """A GPX track of 50 points along a line, the latitudes written as texts[i % len]."""
    rows = []
    for i in range(50):
        lat = texts[i % len(texts)] or f"{46.05 + 0.0001 * i:.6f}"
        rows.append(f'<trkpt lat="{lat}" lon="{14.5 + 0.0001 * i:.6f}">'
                    f"<time>2024-05-03T07:00:{i % 60:02d}Z</time></trkpt>")
    return ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
            + "".join(rows) + "</trkseg></trk></gpx>").encode()


@pytest.mark.parametrize("text", ["46,0500", "0x2E", "4_6.05", "４６.０５", "46.05.1", "abc"])
@pytest.mark.parametrize("every", ["all", "alternate"])
def test_a_coordinate_that_is_no_number_is_dropped_and_counted(tmp_path, text, every):
    # GDAL (strtod) read the number the text starts with: all 50 points at 46.0, or a
    # zig-zag between the track and 46.0 / 4.0 / 0.0 (the equator).
    from geoheat.projection import unproject
    from geoheat.reading import parse_file

    path = tmp_path / "odd.gpx"
    path.write_bytes(_gpx_with_latitudes([text] if every == "all" else [text, None]))
    parsed = parse_file(path)
    bad = 50 if every == "all" else 25
    assert (parsed.invalid, parsed.points) == (bad, 50 - bad)
    lat = unproject(parsed.xy)[:, 1] if parsed.points else np.empty(0)
    assert ((lat > 46.04) & (lat < 46.06)).all()  # only the real track is left
    assert parsed.note == (f'{path}: coordinates that are not numbers (lat="{text}"); '
                           f"dropped {bad} track points as invalid")


def test_plain_decimal_coordinates_in_every_form_are_read(tmp_path):
    from geoheat.coordinates import coordinate

    for text, value in [("46.05", 46.05), (" +46.05 ", 46.05), ("4.605e1", 46.05),
                        (".5", 0.5), ("46.", 46.0), ("-0", 0.0), ("46", 46.0)]:
        assert coordinate(text) == value, text
    for text in ["46,05", "0x2E", "4_6.05", "４６", "", "1e", "--1", "46.0.5", None]:
        assert np.isnan(coordinate(text)), text


def test_coordinates_that_are_no_numbers_are_one_grouped_warning(tmp_path):
    import geoheat

    folder = tmp_path / "tracks"
    folder.mkdir()
    for i, text in enumerate(["46,0500", "0x2E", "4_6.05", "４６.０５"]):
        (folder / f"{i}.gpx").write_bytes(_gpx_with_latitudes([text, None]))
    warnings = []
    result = geoheat.build([folder], tmp_path / "h.tif", on_warning=warnings.append,
                           zoom=14, png=False, keep_duplicates=True)
    assert result.points_invalid == 100 and result.points_used == 100
    assert warnings == ["partly read 4 files: coordinates that are not numbers: "
                        f"{folder / '0.gpx'}, {folder / '1.gpx'}, {folder / '2.gpx'} "
                        "and 1 more (--verbose lists them)"]


def test_a_tcx_coordinate_that_is_no_number_is_dropped_and_counted():
    from geoheat.formats import read_tcx

    rows = "".join(
        f"<Trackpoint><Time>2024-05-03T07:00:{i:02d}Z</Time><Position>"
        f"<LatitudeDegrees>{'46,0500' if i % 2 else 46.05 + 0.0001 * i}</LatitudeDegrees>"
        f"<LongitudeDegrees>{14.5 + 0.0001 * i}</LongitudeDegrees></Position></Trackpoint>"
        for i in range(10))
    data = ('<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/'
            'TrainingCenterDatabase/v2"><Activities><Activity Sport="Running"><Lap><Track>'
            f"{rows}</Track></Lap></Activity></Activities></TrainingCenterDatabase>").encode()
    activity, note = read_tcx(data, "x.tcx")
    lat = activity.segments[0][:, 1]
    assert np.isnan(lat[1::2]).all() and (lat[::2] > 46.04).all()
    assert note == ("x.tcx: coordinates that are not numbers ('46,0500'); "
                    "dropped 5 track points as invalid")


@pytest.mark.parametrize("text", ["2024-05-01t10:00:00z", "2024-05-01 10:00:00Z",
                                  "2024-05-01T10:00:00z", "2024-05-01 10:00:00.000z"])
@pytest.mark.parametrize("broken", [False, True])
def test_rfc3339_times_with_lower_case_or_a_space_are_times(text, broken):
    from geoheat.formats import read_tcx

    rows = "".join(f'<trkpt lat="{46.05 + 0.01 * i}" lon="14.5"><time>{text[:18]}{i}'
                   f"{text[19:]}</time></trkpt>" for i in range(3))
    data = ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            f'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{rows}</trkseg></trk>'
            + ("<trk><trkseg><trkpt" if broken else "</gpx>")).encode()
    activity, note = read_gpx_data(data, "x.gpx")
    assert (note is not None) == broken
    assert activity.start == datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
    np.testing.assert_array_equal(np.concatenate(activity.times),
                                  activity.start.timestamp() + np.arange(3))
    tcx = ('<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/'
           f'TrainingCenterDatabase/v2"><Activities><Activity Sport="Running"><Id>{text}</Id>'
           f"<Lap><Track><Trackpoint><Time>{text}</Time><Position><LatitudeDegrees>46.05"
           "</LatitudeDegrees><LongitudeDegrees>14.5</LongitudeDegrees></Position></Trackpoint>"
           "</Track></Lap></Activity></Activities></TrainingCenterDatabase>").encode()
    assert read_tcx(tcx, "x.tcx")[0].start == activity.start


def garmin_document(n=6, extension=None, before_tracks="", after_first_track=""):
    """A Garmin Connect style GPX: heart rate and cadence in each trackpoint's
    <extensions>; extension(i) may give point i's own (None: the usual)."""
    points = []
    for i in range(n):
        usual = (f"<extensions>\n          <ns3:TrackPointExtension>\n            <ns3:hr>{100 + i}"
                 f"</ns3:hr>\n            <ns3:cad>{80 + i}</ns3:cad>\n"
                 "          </ns3:TrackPointExtension>\n        </extensions>")
        points.append(
            f'      <trkpt lat="{46.05 + i * 1e-4:.9f}" lon="{14.50 + i * 1e-4:.9f}">\n'
            f"        <ele>300.{i}</ele>\n        <time>2024-05-03T07:00:{i:02d}.000Z</time>\n"
            f"        {usual if extension is None or extension(i) is None else extension(i)}\n"
            "      </trkpt>\n")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{before_tracks}<gpx creator="Garmin Connect" '
            'version="1.1" xmlns="http://www.topografix.com/GPX/1/1" '
            'xmlns:ns3="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
            "  <trk>\n    <name>Run</name>\n    <type>running</type>\n    <trkseg>\n"
            + "".join(points) + "    </trkseg>\n  </trk>\n" + after_first_track
            + "</gpx>\n").encode()


def as_gdal_reads_the_file(monkeypatch, data):
    """read_gpx_data with the file's bytes given to GDAL as they are."""
    from geoheat import gpx

    with monkeypatch.context() as patch:
        patch.setattr(gpx, "lean_gpx", lambda data: data)
        return read_gpx_data(data, "x.gpx")


def same_reading(a, b) -> bool:
    (one, note_one), (two, note_two) = a, b
    return (note_one == note_two and len(one.segments) == len(two.segments)
            and all(np.array_equal(s, t) for s, t in zip(one.segments, two.segments))
            and (one.start, one.routes, one.waypoints, one.sport, one.time_note)
            == (two.start, two.routes, two.waypoints, two.sport, two.time_note)
            and (one.times is None) == (two.times is None)
            and all(np.array_equal(s, t, equal_nan=True)
                    for s, t in zip(one.times or [], two.times or [])))


@pytest.mark.parametrize("extension", [None, lambda i: "", lambda i: "" if i % 2 else None])
def test_point_details_are_left_out_of_what_gdal_parses_and_change_nothing(monkeypatch,
                                                                           extension):
    # GDAL parses a GPX twice (opening it, reading it): the trackpoints' elevation, time,
    # heart rate and cadence, two thirds of a Garmin file, are left out of what it is
    # given; the tracks read the same (their times from the file itself).
    from geoheat.gpx import lean_gpx

    data = garmin_document(50, extension)
    lean = lean_gpx(data)
    assert len(lean) < len(data) * 0.7 and b"<ns3:TrackPointExtension" not in lean
    assert b"<ele>" not in lean and b"<time>" not in lean
    assert lean[:data.find(b"<trkpt")] == data[:data.find(b"<trkpt")]
    got = read_gpx_data(data, "x.gpx")
    assert got[0].points == 50 and got[0].sport == "running" and got[1] is None
    assert got[0].start == datetime(2024, 5, 3, 7, 0, tzinfo=timezone.utc)
    assert same_reading(got, as_gdal_reads_the_file(monkeypatch, data))


@pytest.mark.parametrize("odd", [
    # damaged: GDAL refuses the file; the points before the break are kept, and said
    lambda i: "<extensions><ns3:E><ns3:hr>120</ns3:cad></ns3:E></extensions>" if i == 3 else None,
    lambda i: "<extensions><ns3:E><ns3:hr>1&amp;2</ns3:hr></ns3:E></extensions>" if i == 2
    else None,
    lambda i: "<extensions><ns3:E><ns3:hr>12\x0b</ns3:hr></ns3:E></extensions>" if i == 4 else None,
    lambda i: "<extensions><ns3:E><ns3:hr>12</ns3:hr></ns3:E>" if i == 1 else None,
    # well-formed but not as devices write it: given to GDAL as it is
    lambda i: '<extensions><ns3:E a="1"><ns3:hr>12</ns3:hr></ns3:E></extensions>' if i == 2
    else None,
    lambda i: "<extensions><ns3:E><ns3:hr>12</ns3:hr></ns3:E></extensions><sym>x</sym>" if i == 2
    else None,
])
def test_odd_point_extensions_are_read_as_gdal_reads_the_file(monkeypatch, odd):
    from geoheat.gpx import lean_gpx

    data = garmin_document(6, odd)
    assert lean_gpx(data) is data
    assert same_reading(read_gpx_data(data, "x.gpx"), as_gdal_reads_the_file(monkeypatch, data))


@pytest.mark.parametrize("where", ["entity", "track fields"])
def test_point_extensions_are_kept_where_leaving_them_out_could_change_the_tracks(
        monkeypatch, where):
    # An entity could put text back where extensions went; a track's own <extensions>
    # (GDAL makes them fields, even one named 'type') after the first point would move
    # into the first megabyte where GDAL looks for them.
    from geoheat.gpx import lean_gpx

    data = (garmin_document(6, before_tracks='<!DOCTYPE gpx [<!ENTITY e "x">]>\n')
            if where == "entity" else garmin_document(6, after_first_track=(
                "  <trk><extensions><type>cycling</type></extensions><trkseg>"
                '<trkpt lat="46.1" lon="14.6"/></trkseg></trk>\n')))
    assert lean_gpx(data) is data
    assert same_reading(read_gpx_data(data, "x.gpx"), as_gdal_reads_the_file(monkeypatch, data))


def test_points_of_other_layouts_keep_their_details_and_read_the_same(monkeypatch):
    # A point whose <time> comes before its <ele> keeps them (its extensions go); the
    # others lose theirs (one with no <ele> its time too), and the track reads as GDAL
    # reads the file.
    from geoheat.gpx import lean_gpx

    data = garmin_document(8).replace(
        b"<ele>300.3</ele>\n        <time>2024-05-03T07:00:03.000Z</time>",
        b"<time>2024-05-03T07:00:03.000Z</time><ele>300.3</ele>").replace(
        b"<ele>300.5</ele>", b"")
    lean = lean_gpx(data)
    assert lean.count(b"<time>") == 1 and b"<extensions" not in lean
    got = read_gpx_data(data, "x.gpx", times=True)
    assert same_reading(got, as_gdal_reads_the_file(monkeypatch, data))
    assert got[0].points == 8 and sum(map(len, got[0].times)) == 8


def test_points_with_a_time_and_no_elevation_lose_it_and_read_the_same(monkeypatch):
    from geoheat.gpx import lean_gpx

    data = garmin_document(8, lambda i: "")
    for i in range(8):
        data = data.replace(b"<ele>300.%d</ele>" % i, b"")
    lean = lean_gpx(data)
    assert b"<time>" not in lean and len(lean) < len(data) * 0.8
    got = read_gpx_data(data, "x.gpx", times=True)
    assert same_reading(got, as_gdal_reads_the_file(monkeypatch, data))
    assert got[0].points == 8 and not np.isnan(np.concatenate(got[0].times)).any()
