"""What a file is (by its bytes), start times, per-point times, truncated and odd files.

Each test generates the shape a real file had (see the issue notes in the names).
"""

import gzip
import shutil
from datetime import datetime, timezone

import numpy as np
import pytest

from geoheat import GPXError, read_gpx
from geoheat.projection import unproject
from geoheat.formats import read_tcx
from geoheat.gpx import read_gpx_data, start_time
from geoheat.reading import parse_file
from geoheat.samples import gpx_document
from geoheat.sniff import describe_content, sniff_format
from geoheat.source_bytes import Source

from .conftest import shared_folder
from .test_exports import tcx_document

TRACK = np.array([(14.50 + 0.0005 * i, 46.05 + 0.0002 * i) for i in range(30)])
T0 = datetime(2019, 5, 3, 7, 0, tzinfo=timezone.utc)


def seconds(n, start=T0):
    return [datetime.fromtimestamp(start.timestamp() + i, timezone.utc) for i in range(n)]


GPX = gpx_document([TRACK], times=[seconds(len(TRACK))]).encode()


# --- 3. a file is what its bytes say -------------------------------------------------

@pytest.mark.parametrize("head, expected", [
    (GPX, "gpx"),
    (b"\n\n  \t" + GPX, "gpx"),
    (b"\xef\xbb\xbf" + GPX, "gpx"),
    (GPX.decode().encode("utf-16"), "gpx"),
    (b'<!-- made by hand --><g:gpx xmlns:g="x">', "gpx"),
    (tcx_document(TRACK, T0).encode(), "tcx"),
    (b"\x0e\x10\x43\x08\x00\x00\x00\x00.FIT", "fit"),
    (b"\x89PNG\r\n\x1a\n", None),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", None),
    (b"", None),
])
def test_sniff_format(head, expected):
    assert sniff_format(head) == expected


def write(path, data):
    path.write_bytes(data)
    return path


def test_files_are_read_by_their_content_not_their_name(tmp_path):
    tcx = tcx_document(TRACK, T0, sport="Running").encode()
    cases = {
        "gzip-named.gpx": gzip.compress(GPX),
        "blank-lines.gpx": b"\r\n\r\n   " + GPX,
        "bom-and-blanks.gpx": b"\xef\xbb\xbf\n" + GPX,
        "utf16-le.gpx": GPX.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
                          .encode("utf-16"),
        "utf16-be.gpx": b"\xfe\xff" + GPX.decode().replace('encoding="UTF-8"',
                                                           'encoding="UTF-16"').encode("utf-16-be"),
        "a-tcx.gpx": tcx,
        "a-gpx.fit": GPX,
        "a-gpx.tcx.gz": gzip.compress(GPX),
    }
    for name, data in cases.items():
        parsed = parse_file(write(tmp_path / name, data))
        assert parsed.error is None, (name, parsed.error)
        assert parsed.points == len(TRACK), name
        np.testing.assert_allclose(unproject(parsed.xy), TRACK, atol=1e-6, err_msg=name)
        assert parsed.format == ("tcx" if name == "a-tcx.gpx" else "gpx"), name
    assert parse_file(tmp_path / "a-tcx.gpx").activity_type == "Run"


def test_a_fit_file_named_gpx_is_read_as_fit(tmp_path):
    folder = shared_folder("fit-tcx")
    shutil.copy(folder / "garmin-fenix-5-run.fit", tmp_path / "run.gpx")
    shutil.copy(folder / "Settings.fit", tmp_path / "settings.gpx")
    run = parse_file(tmp_path / "run.gpx")
    assert run.error is None and run.format == "fit" and run.points == 21
    error = parse_file(tmp_path / "settings.gpx").error
    assert error == (f"{tmp_path / 'settings.gpx'}: a FIT file: "
                     "not an activity (a FIT settings file)")


@pytest.mark.parametrize("data, what", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an activity file (a PNG image)"),
    (b"<!DOCTYPE html>\n<html><head><title>Strava</title></head></html>",
     "not an activity file (an HTML page)"),
    (b"\n<!doctype html>\n<!-- a login page --><html lang=en>",
     "not an activity file (an HTML page)"),
    (b'<?xml version="1.0"?><osm version="0.6"/>',
     "not an activity file (an XML file whose root is <osm>)"),
    (b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"></kml>',
     "not an activity file (a KML file"),
    (b"%PDF-1.4\n", "not an activity file (a PDF document)"),
    (b'{"type": "FeatureCollection"}', "not an activity file (JSON)"),
    (b"", "empty file"),
    (b"\n\n", "empty file"),
])
def test_what_a_file_really_is_is_said(tmp_path, data, what):
    path = write(tmp_path / "x.gpx", data)
    error = parse_file(path).error
    assert error.startswith(f"{path}: {what}") and "\n" not in error


def test_describe_content():
    assert describe_content(b"\xff\xd8\xff\xe0") == "a JPEG image"
    assert describe_content(b"PK\x03\x04") == "a zip archive"
    assert describe_content(b"name,lat\n1,2") == "text, not GPX, FIT or TCX"


# --- 5. the start is the first trackpoint's time; implausible times are none --------

def test_start_is_the_first_point_time_not_the_converters_metadata_time(tmp_path):
    converted = datetime(2025, 11, 2, 12, 0, tzinfo=timezone.utc)
    path = write(tmp_path / "c.gpx",
                 gpx_document([TRACK], start=converted, times=[seconds(len(TRACK))]).encode())
    assert read_gpx(path).start == T0 and parse_file(path).start == T0
    assert start_time(path.read_bytes()) == T0
    untimed = write(tmp_path / "u.gpx", gpx_document([TRACK], start=converted).encode())
    assert parse_file(untimed).start == converted  # no point has a time: the header's


@pytest.mark.parametrize("when", [datetime(1970, 1, 1, tzinfo=timezone.utc),
                                  datetime(1979, 12, 31, tzinfo=timezone.utc),
                                  datetime(2099, 1, 1, tzinfo=timezone.utc)])
def test_implausible_times_are_no_start(tmp_path, when):
    path = write(tmp_path / "t.gpx",
                 gpx_document([TRACK], times=[seconds(len(TRACK), when)]).encode())
    activity, _ = read_gpx_data(path.read_bytes(), path)
    assert activity.start is None and "implausible" in activity.time_note
    assert activity.times is not None  # the points keep their times for the gap rule
    tcx, _ = read_tcx(tcx_document(TRACK, when).encode(), "t.tcx")
    assert tcx.start is None and "implausible" in tcx.time_note
    parsed = parse_file(path)
    assert parsed.start is None and parsed.error is None
    assert "implausible" in parsed.time_note
    sane, _ = read_gpx_data(GPX, "ok.gpx")
    assert sane.start == T0 and sane.time_note is None


def test_tcx_start_is_its_first_trackpoint():
    document = tcx_document(TRACK, T0).replace(
        f"<Id>{T0.strftime('%Y-%m-%dT%H:%M:%SZ')}</Id>", "<Id>2025-01-01T00:00:00Z</Id>")
    activity, _ = read_tcx(document.encode(), "x.tcx")
    assert activity.start == T0


# --- 8. no hang, no crash -------------------------------------------------------------

def test_self_closing_trackpoints_without_times_are_read_in_linear_time(tmp_path):
    # 860 KB of these took 83 s (a quadratic regex); 2 MB would hang the suite.
    points = "".join(f'<trkpt lat="{46 + i * 1e-6:.6f}" lon="14.5"/>' for i in range(60_000))
    data = (f'<?xml version="1.0"?><gpx version="1.1"><trk><trkseg>{points}'
            '</trkseg></trk></gpx>').encode()
    assert len(data) > 2_000_000
    parsed = parse_file(write(tmp_path / "flat.gpx", data))
    assert parsed.error is None and parsed.points == 60_000 and parsed.start is None
    assert start_time(data) is None
    cut = parse_file(write(tmp_path / "flat-cut.gpx", data[: len(data) // 2]))
    assert cut.error is None and 29_000 < cut.points < 31_000 and "broken off" in cut.note


def test_tcx_empty_latitude_skips_that_point():
    document = tcx_document(TRACK, T0).replace(
        f"<LatitudeDegrees>{TRACK[3][1]}</LatitudeDegrees>", "<LatitudeDegrees/>", 1)
    document = document.replace(
        f"<LongitudeDegrees>{TRACK[5][0]}</LongitudeDegrees>",
        "<LongitudeDegrees>east</LongitudeDegrees>", 1)
    activity, note = read_tcx(document.encode(), "x.tcx")
    lonlat = np.concatenate(activity.segments)
    assert np.isnan(lonlat[3]).any() and np.isnan(lonlat[5]).any()
    # An empty one is no position; 'east' is a coordinate that is not a number: said.
    assert note == ("x.tcx: coordinates that are not numbers ('east'); "
                    "dropped 1 track point as invalid")


def test_tcx_odd_values_count_as_invalid_points(tmp_path):
    document = tcx_document(TRACK, T0).replace(
        f"<LatitudeDegrees>{TRACK[3][1]}</LatitudeDegrees>", "<LatitudeDegrees/>", 1)
    parsed = parse_file(write(tmp_path / "x.tcx", document.encode()))
    assert parsed.error is None and parsed.points == len(TRACK) - 1 and parsed.invalid == 1
    assert len(parsed.offsets) == 3  # the track is cut where the point went


# --- 4. a truncated GPX keeps what came before the break -------------------------------

@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.97])
def test_truncated_gpx_keeps_the_points_before_the_break(tmp_path, fraction):
    data = gpx_document([TRACK, TRACK + 0.01], times=[seconds(30), seconds(30)]).encode()
    cut = data[: int(len(data) * fraction)]
    path = write(tmp_path / "cut.gpx", cut)
    parsed = parse_file(path)
    complete = cut.count(b"</trkpt>")  # the points a prefix parse can read
    assert parsed.error is None and parsed.points == complete
    assert parsed.note.startswith(f"{path}: broken off (")
    assert parsed.note.endswith(f"; kept the {complete:,} positions before it")
    assert parsed.start == T0
    everything = np.concatenate([TRACK, TRACK + 0.01])[:complete]
    np.testing.assert_allclose(unproject(parsed.xy), everything, atol=1e-6)
    assert len(parsed.offsets) - 1 == (1 if complete <= 30 else 2)  # segments kept apart


def test_a_gpx_broken_before_any_point_is_an_error(tmp_path):
    path = write(tmp_path / "b.gpx", GPX[: GPX.index(b"</trkpt>")])
    assert "broken or truncated XML" in parse_file(path).error
    with pytest.raises(GPXError, match="broken or truncated XML"):
        read_gpx(path)


# --- 7. 0,0 is a GPS with no fix, not a position --------------------------------------

def test_points_at_zero_zero_are_dropped_as_invalid(tmp_path):
    track = np.vstack([[[0.0, 0.0]] * 3, TRACK, [[0.0, 0.0]]])
    path = write(tmp_path / "nofix.gpx", gpx_document([track]).encode())
    parsed = parse_file(path)
    assert parsed.points == len(TRACK) and parsed.invalid == 4
    np.testing.assert_allclose(unproject(parsed.xy), TRACK, atol=1e-6)
    near = write(tmp_path / "near.gpx", gpx_document([[(0.0, 0.001), (0.001, 0.0)]]).encode())
    assert parse_file(near).points == 2  # only exactly 0,0 is no fix


# --- 6. per-point times -----------------------------------------------------------------

def test_gpx_points_carry_their_times(tmp_path):
    times = [seconds(30), seconds(30, datetime(2019, 5, 3, 9, 0, tzinfo=timezone.utc))]
    activity = read_gpx(write(tmp_path / "t.gpx",
                              gpx_document([TRACK, TRACK], times=times).encode()))
    assert [t.dtype for t in activity.times] == [np.float64, np.float64]
    for got, want in zip(activity.times, times):
        np.testing.assert_array_equal(got, [w.timestamp() for w in want])


def test_times_with_gaps_offsets_prefixes_and_self_closing_points():
    data = (b'<?xml version="1.0"?><g:gpx xmlns:g="http://www.topografix.com/GPX/1/1" '
            b'version="1.1"><g:trk><g:trkseg>'
            b'<g:trkpt lat="46.0" lon="14.0"><g:time>2019-05-03T09:00:00+02:00</g:time>'
            b'</g:trkpt><g:trkpt lat="46.1" lon="14.1"/>'
            b'<g:trkpt lat="46.2" lon="14.2"><g:ele>3</g:ele>'
            b'<g:time>2019-05-03T07:00:02.5Z</g:time></g:trkpt>'
            b'</g:trkseg></g:trk></g:gpx>')
    activity = read_gpx_data(data, "p.gpx")[0]
    assert activity.start == T0
    np.testing.assert_array_equal(activity.times[0], [T0.timestamp(), np.nan,
                                                      T0.timestamp() + 2.5])


def test_no_times_is_none_and_tcx_times(tmp_path):
    assert read_gpx_data(gpx_document([TRACK]).encode(), "n.gpx")[0].times is None
    activity, _ = read_tcx(tcx_document(TRACK, T0).encode(), "x.tcx")
    np.testing.assert_array_equal(activity.times[0], [T0.timestamp() + i for i in range(30)])


def test_real_gpx_times_pair_with_every_point():
    for path in sorted(shared_folder("garmin-tree").glob("GPX_OUT/*.gpx"))[:8]:
        activity = read_gpx(path)
        if not activity.segments:
            continue
        assert [len(t) for t in activity.times] == [len(s) for s in activity.segments]
        flat = np.concatenate(activity.times)
        assert np.isfinite(flat).all() and (np.diff(flat) >= 0).all(), path.name
        assert flat[0] == activity.start.timestamp()


def test_source_format_stays_the_name_guess(tmp_path):
    assert Source(tmp_path / "x.FIT.gz").format == "fit"
    assert Source(tmp_path / "x.kml").format == "gpx"


def test_parse_file_keeps_times_aligned_with_kept_points(tmp_path):
    # One float64 per kept point, after invalid points (here 0,0: no fix) are dropped.
    track = np.vstack([TRACK[:10], [[0.0, 0.0]], TRACK[10:]])
    when = seconds(len(track))
    path = write(tmp_path / "t.gpx", gpx_document([track], times=[when]).encode())
    parsed = parse_file(path, all_times=True)
    assert len(parsed.xy) == len(TRACK) and parsed.invalid == 1 and parsed.time_note is None
    expected = [w.timestamp() for i, w in enumerate(when) if i != 10]
    np.testing.assert_array_equal(parsed.times, expected)
    # No step of this track is long enough for a gap: its times are neither read nor kept.
    assert parse_file(path).times is None
    untimed = write(tmp_path / "u.gpx", gpx_document([TRACK]).encode())
    assert parse_file(untimed).times is None
    old = write(tmp_path / "old.gpx", gpx_document([TRACK], times=[seconds(30, datetime(
        1970, 1, 1, tzinfo=timezone.utc))]).encode())
    assert "implausible" in parse_file(old).time_note


def test_one_malformed_time_among_thousands_is_nan_not_a_crash():
    # Found by bench/fuzz_inputs.py: numpy's datetime64 cast of a large array holding
    # one malformed string kills the process (a flipped bit in a Garmin file).
    from geoheat.times import posix_times

    texts = [b"2024-05-29T12:46:28.000Z"] * 9000
    texts[4500] = b"2024-'5-29T12:46:28.000Z"
    texts[4501] = b"2023-02-29T12:46:28.000Z"  # no such day
    got = posix_times(texts)
    assert np.isnan(got).sum() == 2 and np.isnan(got[4500:4502]).all()
    assert got[0] == datetime(2024, 5, 29, 12, 46, 28, tzinfo=timezone.utc).timestamp()
    mixed = posix_times([b"2024-02-29T00:00:00.5Z", b"1969-12-31T23:59:59.9Z"])
    np.testing.assert_allclose(mixed, [1709164800.5, -0.1])


def test_a_start_without_zone_is_utc(tmp_path):
    data = gpx_document([TRACK]).encode().replace(
        b"<trk>", b"<metadata><time>2019-05-03T07:00:00</time></metadata><trk>")
    assert parse_file(write(tmp_path / "naive.gpx", data)).start == T0


def test_fit_times_counted_from_power_on_are_no_start(tmp_path, monkeypatch):
    # A FIT clock never set gives seconds since power-on: 1990-01-01 and so on.
    from geoheat import formats, reading

    folder = shared_folder("fit-tcx")
    shutil.copy(folder / "garmin-fenix-5-run.fit", tmp_path / "run.fit")
    assert parse_file(tmp_path / "run.fit").start.year == 2017  # a set clock: kept
    real = formats.read_fit

    def power_on_clock(data, name):
        activity, note = real(data, name)
        return activity._replace(start=datetime(1990, 1, 1, 0, 7, tzinfo=timezone.utc)), note

    monkeypatch.setitem(reading.READERS, "fit", power_on_clock)
    parsed = parse_file(tmp_path / "run.fit")
    assert parsed.error is None and parsed.points == 21 and parsed.start is None
