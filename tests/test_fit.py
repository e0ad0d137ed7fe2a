"""geoheat.fit, the fast FIT reader: the same answer as Garmin's SDK on every real FIT file
in ../shared (skipped when absent), and each FIT feature on bytes a tiny encoder makes here."""

import struct
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from geoheat import fit, fitdamage, fitscan, formats
from geoheat.errors import GPXError

from .conftest import SHARED_DATA, shared_folder

FIT_EPOCH = datetime(1989, 12, 31, tzinfo=timezone.utc)
T0 = 1_100_000_000  # FIT seconds: 2024-11-09

# (field number, struct code, FIT base type byte)
TIMESTAMP, LAT, LON = (253, "I", 0x86), (0, "i", 0x85), (1, "i", 0x85)
SPEED, HEART_RATE = (6, "H", 0x84), (3, "B", 0x02)
FILE_TYPE, SPORT_FIELD = (0, "B", 0x00), (0, "B", 0x00)
START_TIME, SESSION_SPORT = (2, "I", 0x86), (5, "B", 0x00)
EVENT = (0, "B", 0x00)
INVALID = 0x7FFFFFFF
SDK = fit.read_fit_sdk  # the reference


@pytest.fixture(autouse=True)
def no_fallback(monkeypatch):
    """fit.read_fit must read every file here itself, never hand it to the SDK."""
    def fallback(data, name):
        raise AssertionError(f"{name}: fit.read_fit fell back to the SDK")
    monkeypatch.setattr(fit, "read_fit_sdk", fallback)


def semicircles(degrees: float) -> int:
    return int(round(degrees * 2**31 / 180))


class Encoder:
    """Writes FIT messages: definitions, data messages (normal or compressed headers)."""

    def __init__(self):
        self.body = bytearray()
        self.layouts = {}

    def define(self, local, number, fields, big=False, developer=()):
        """developer: (field number, size, developer data index) of developer fields."""
        endian = ">" if big else "<"
        self.body += bytes([0x40 | (0x20 if developer else 0) | local, 0, int(big)])
        self.body += struct.pack(endian + "HB", number, len(fields))
        for num, code, base in fields:
            self.body += bytes([num, struct.calcsize(code), base])
        if developer:
            self.body += bytes([len(developer)])
            for num, size, index in developer:
                self.body += bytes([num, size, index])
        self.layouts[local] = (endian + "".join(code for _, code, _ in fields),
                               sum(size for _, size, _ in developer))
        return self

    def write(self, local, *values, compressed=None, developer=None):
        """One data message; compressed: the 5-bit time offset of a compressed header."""
        layout, developer_size = self.layouts[local]
        if compressed is None:
            self.body.append(local)
        else:
            self.body.append(0x80 | (local << 5) | compressed)
        self.body += struct.pack(layout, *values)
        self.body += developer if developer is not None else bytes(developer_size)
        return self

    def bytes(self, header_size=14):
        header = struct.pack("<BBHI4s", header_size, 0x20, 2132, len(self.body), b".FIT")
        if header_size == 14:
            header += b"\0\0"
        return header + bytes(self.body) + b"\0\0"  # CRCs: neither reader checks them


def activity(points, start=T0, sport=2, session=True, big=False):
    """A FIT activity: file_id, records of (lon, lat) a second apart, then a session."""
    e = Encoder().define(0, 0, [FILE_TYPE], big=big).write(0, 4)
    e.define(1, 20, [TIMESTAMP, LAT, LON, SPEED], big=big)
    for i, (lon, lat) in enumerate(points):
        e.write(1, start + i, semicircles(lat), semicircles(lon), 500 + i)
    if session:
        e.define(2, 18, [TIMESTAMP, START_TIME, SESSION_SPORT], big=big)
        e.write(2, start + len(points), start, sport)
    return e


def fit_time(seconds):
    return datetime.fromtimestamp(FIT_EPOCH.timestamp() + seconds, timezone.utc)


def lonlat(result):
    activity, _ = result
    return np.concatenate(activity.segments) if activity.segments else np.empty((0, 2))


def assert_same_as_sdk(data, name="x.fit", sdk=None):
    """fit.read_fit gives the SDK path's positions (to 1e-7 degrees, as many), start and
    sport, and a note where it gives one; `sdk`: its result, if already known."""
    fast, sdk = fit.read_fit(data, name), sdk or SDK(data, name)
    if fast[1] and " position out of step" in fast[1]:  # a damaged file's lone position
        assert fast[0].points == 0 and sdk[0].points == 1, (name, fast[1])
        return fast
    assert lonlat(fast).shape == lonlat(sdk).shape, name
    np.testing.assert_allclose(lonlat(fast), lonlat(sdk), rtol=0, atol=1e-7, err_msg=name)
    assert fast[0].start == sdk[0].start, name
    assert fast[0].sport == sdk[0].sport, name
    if sdk[0].times is not None:  # each position's time, for the gap rule
        np.testing.assert_array_equal(fast[0].times[0], sdk[0].times[0], err_msg=name)
    assert (fast[1] is None) == (sdk[1] is None), (name, fast[1], sdk[1])
    return fast


POINTS = [(104.06 + 0.0001 * i, 30.65 - 0.00005 * i) for i in range(300)]


def test_a_generated_activity():
    data = activity(POINTS).bytes()
    (act, note) = assert_same_as_sdk(data)
    np.testing.assert_allclose(act.segments[0], POINTS, atol=1e-7)
    assert act.start == fit_time(T0) and act.sport == "cycling" and note is None
    assert formats.read_fit(data, "x.fit")[0].points == len(POINTS)  # the name stays


def test_a_12_byte_header_and_no_session():
    data = activity(POINTS[:5], sport=1, session=False).bytes(header_size=12)
    act, note = assert_same_as_sdk(data)
    assert act.points == 5 and note is None
    assert act.start == fit_time(T0)  # the first record's timestamp
    assert act.sport is None


def test_the_sport_message_gives_the_sport_without_a_session():
    e = activity(POINTS[:3], session=False)
    e.define(3, 12, [SPORT_FIELD]).write(3, 1)
    act, _ = assert_same_as_sdk(e.bytes())
    assert act.sport == "running" and act.start == fit_time(T0)


def test_big_endian_definitions():
    little = fit.read_fit(activity(POINTS).bytes(), "x.fit")
    big = assert_same_as_sdk(activity(POINTS, big=True).bytes())
    np.testing.assert_array_equal(lonlat(big), lonlat(little))
    assert big[0].start == little[0].start and big[0].sport == little[0].sport == "cycling"


def test_invalid_positions_are_skipped():
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 20, [TIMESTAMP, LAT, LON])
    e.write(1, T0, INVALID, INVALID)
    e.write(1, T0 + 1, semicircles(30.5), semicircles(104.5))
    e.write(1, T0 + 2, semicircles(30.6), INVALID)  # a latitude alone is no position
    e.write(1, T0 + 3, INVALID, semicircles(104.6))
    e.write(1, T0 + 4, semicircles(30.7), semicircles(104.7))
    act, _ = assert_same_as_sdk(e.bytes())
    np.testing.assert_allclose(act.segments[0], [(104.5, 30.5), (104.7, 30.7)], atol=1e-7)
    assert act.start == fit_time(T0)


def test_records_without_positions_are_an_indoor_activity():
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4).define(1, 20, [TIMESTAMP, HEART_RATE])
    for i in range(50):
        e.write(1, T0 + i, 120)
    act, note = assert_same_as_sdk(e.bytes())
    assert act.segments == [] and note is None and act.start == fit_time(T0)


def test_developer_fields_are_skipped_by_their_size():
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 20, [TIMESTAMP, LAT, LON], developer=[(0, 2, 0), (1, 5, 0)])
    for i, (lon, lat) in enumerate(POINTS[:40]):
        e.write(1, T0 + i, semicircles(lat), semicircles(lon), developer=bytes(range(i, i + 7)))
    act, note = assert_same_as_sdk(e.bytes())
    np.testing.assert_allclose(act.segments[0], POINTS[:40], atol=1e-7)
    assert note is None


def test_compressed_timestamp_headers():
    """The SDK stops at the first compressed header; geoheat.fit reads them all."""
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 21, [TIMESTAMP, EVENT]).write(1, T0 + 30, 0)  # T0 + 30: offset 30 of 32
    e.define(2, 20, [LAT, LON])
    times = []
    for i, (lon, lat) in enumerate(POINTS[:10]):
        offset = (T0 + 31 + 2 * i) & 0x1F  # rolls over past 31 after the first record
        e.write(2, semicircles(lat), semicircles(lon), compressed=offset)
        times.append(T0 + 31 + 2 * i)
    e.define(3, 20, [TIMESTAMP, LAT, LON])  # a normal record between compressed ones
    e.write(3, T0 + 100, semicircles(31.0), semicircles(105.0))
    e.write(2, semicircles(31.1), semicircles(105.1), compressed=(T0 + 101) & 0x1F)
    act, note = fit.read_fit(e.bytes(), "x.fit")
    np.testing.assert_allclose(act.segments[0], POINTS[:10] + [(105.0, 31.0), (105.1, 31.1)],
                               atol=1e-7)
    assert note is None
    assert act.start == fit_time(times[0])  # no session: the first record's time
    sdk, sdk_note = SDK(e.bytes(), "x.fit")
    assert sdk.points == 0 and "Compressed timestamp" in sdk_note


def test_runs_end_at_a_redefinition_and_at_other_messages():
    """Records in runs of many lengths, between other messages, and local type 1
    redefined with another layout halfway: every position, in order."""
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 20, [TIMESTAMP, LAT, LON])
    e.define(2, 21, [TIMESTAMP, EVENT])
    expected, t, reordered = [], T0, False
    for run in (1, 2, 31, 32, 33, 170, 1, 700, 3):
        for _ in range(run):
            lon, lat = 104 + len(expected) * 1e-4, 30 + len(expected) * 1e-4
            if reordered:
                e.write(1, 130, semicircles(lon), 7, semicircles(lat), t)
            else:
                e.write(1, t, semicircles(lat), semicircles(lon))
            expected.append((lon, lat))
            t += 1
        e.write(2, t, 1)
        if run == 170:
            e.define(1, 20, [HEART_RATE, LON, SPEED, LAT, TIMESTAMP])
            reordered = True
    act, note = assert_same_as_sdk(e.bytes())
    np.testing.assert_allclose(act.segments[0], expected, atol=1e-7)
    assert note is None


def test_chained_fit_files():
    first, second = activity(POINTS[:20]).bytes(), activity(POINTS[20:50], start=T0 + 99)
    act, note = assert_same_as_sdk(first + second.bytes(header_size=12))
    np.testing.assert_allclose(act.segments[0], POINTS[:50], atol=1e-7)
    assert act.start == fit_time(T0) and note is None


@pytest.mark.parametrize("cut", [1, 5, 13, 14, 300])
def test_a_truncated_file_keeps_the_positions_before_the_break(cut):
    data = activity(POINTS).bytes()
    record = 1 + 4 + 4 + 4 + 2
    records_end = len(data) - 2 - (6 + 3 * 3 + 1 + 4 + 4 + 1)  # before the session
    truncated = data[:records_end - cut]
    act, note = assert_same_as_sdk(truncated)
    kept = len(POINTS) - (cut + record - 1) // record
    assert act.points == kept
    assert note.startswith("x.fit: broken off (") and f"kept the {kept} positions" in note
    np.testing.assert_allclose(act.segments[0], POINTS[:kept], atol=1e-7)


def test_a_file_cut_inside_a_definition_keeps_the_positions_before_it():
    e = activity(POINTS[:30], session=False)
    before = len(e.body)
    e.define(4, 20, [TIMESTAMP, LAT, LON], developer=[(0, 2, 0), (1, 1, 0)])
    data = e.bytes()
    definition = 14 + before
    for cut in range(definition + 1, definition + 6 + 9 + 1 + 6):
        act, note = assert_same_as_sdk(data[:cut])
        assert act.points == 30 and "broken off" in note, cut


def test_a_repeated_definition_is_read_as_the_first():
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    for i, (lon, lat) in enumerate(POINTS[:20]):  # some devices define before each record
        e.define(i % 3 + 1, 20, [TIMESTAMP, LAT, LON], big=i % 2 == 1)
        e.write(i % 3 + 1, T0 + i, semicircles(lat), semicircles(lon))
    act, _ = assert_same_as_sdk(e.bytes())
    np.testing.assert_allclose(act.segments[0], POINTS[:20], atol=1e-7)


def test_a_message_of_an_undefined_local_type_ends_the_reading():
    e = activity(POINTS[:10], session=False)
    e.body.append(9)  # local type 9 was never defined
    e.write(1, T0 + 99, semicircles(30.0), semicircles(104.0), 0)
    act, note = assert_same_as_sdk(e.bytes())
    assert act.points == 10 and "undefined local type 9" in note


def test_an_invalid_base_type_ends_the_reading():
    e = activity(POINTS[:10], session=False)
    e.define(5, 20, [(7, "B", 0x1F)])  # base type 31 does not exist
    act, note = assert_same_as_sdk(e.bytes())
    assert act.points == 10 and "base type" in note


@pytest.mark.parametrize("data", [
    b"",
    b"<?xml version='1.0'?><gpx></gpx>",
    b"\x0e\x20\x54\x08" + bytes(12),  # no ".FIT"
    b"\x0e\x20\x54\x08\0\0\0\0.FAT\0\0\0\0",
    b"\x0c\x10\0\0\0\0\0\0.FIT",  # a 12-byte header and nothing after it
], ids=["empty", "gpx", "no-magic", "wrong-magic", "header-only"])
def test_not_a_fit_file(data):
    with pytest.raises(GPXError, match="x.fit: not a FIT file"):
        fit.read_fit(data, "x.fit")


def test_a_settings_file_is_not_an_activity():
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 2)  # 2: settings
    e.define(1, 2, [(1, "B", 0x02)]).write(1, 7)  # a user_profile message
    with pytest.raises(GPXError, match=r"x.fit: not an activity \(a FIT settings file\)"):
        fit.read_fit(e.bytes(), "x.fit")


def test_a_layout_it_does_not_model_goes_to_the_sdk(monkeypatch):
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 20, [TIMESTAMP, (0, "I", 0x86), LON])  # an unsigned latitude
    e.write(1, T0, semicircles(30.5), semicircles(104.5))
    calls = []
    monkeypatch.setattr(fit, "read_fit_sdk",
                        lambda data, name: calls.append(name) or SDK(data, name))
    act, _ = fit.read_fit(e.bytes(), "x.fit")
    assert calls == ["x.fit"] and act.points == 1


# Real files: every FIT file in ../shared, against the SDK.

def shared_fit_files():
    return sorted(SHARED_DATA.glob("fit-tcx/*.fit")) + sorted(
        SHARED_DATA.glob("garmin-tree/FIT_OUT/*.fit"))


def read_with_sdk(path):
    """The SDK path's result for one file, or its GPXError's message."""
    try:
        return SDK(path.read_bytes(), path.name)
    except GPXError as err:
        return str(err)


@pytest.fixture(scope="module")
def sdk_results():
    """The SDK's reading of every shared FIT file (about 10 s of its decoding, in two
    processes): the reference the fast reader must match."""
    from concurrent.futures import ProcessPoolExecutor

    files = shared_fit_files()
    with ProcessPoolExecutor(2) as pool:
        return dict(zip(files, pool.map(read_with_sdk, files, chunksize=2)))


@pytest.mark.parametrize("path", shared_fit_files() or [None],
                         ids=lambda p: p.name if p else "shared-data-absent")
def test_real_files_read_as_the_sdk_reads_them(path, request):
    if path is None:
        shared_folder("fit-tcx")  # skips, saying why
    expected = request.getfixturevalue("sdk_results")[path]
    data = path.read_bytes()
    if isinstance(expected, str):
        with pytest.raises(GPXError) as raised:
            fit.read_fit(data, path.name)
        assert str(raised.value) == expected
        return
    act, note = assert_same_as_sdk(data, path.name, sdk=expected)
    assert act.points == expected[0].points


def test_the_real_files_are_all_there():
    assert len(list(shared_folder("fit-tcx").glob("*.fit"))) == 13
    assert len(list(shared_folder("garmin-tree/FIT_OUT").glob("*.fit"))) == 36


@pytest.mark.parametrize("name", ["garmin-fenix-5-run.fit", "activity-unexpected-eof.fit"])
def test_real_files_truncated_or_damaged_in_memory(name):
    data = (shared_folder("fit-tcx") / name).read_bytes()
    for cut in np.linspace(20, len(data) - 3, 9).astype(int):
        act, note = assert_same_as_sdk(data[:cut], name)
        assert note and "broken off" in note
    # a record's header byte turned into one of a local type never defined
    at = fit_header_of_a_record(data)
    damaged = bytearray(data)
    damaged[at] = 0x0F
    act, note = assert_same_as_sdk(bytes(damaged), name)
    assert "undefined local type 15" in note


def fit_header_of_a_record(data: bytes) -> int:
    """The offset of the 3rd record message, found by a plain walk (normal headers only)."""
    p, end, layouts, seen = data[0], data[0] + int.from_bytes(data[4:8], "little"), {}, 0
    while p < end:
        h = data[p]
        assert not h & 0xA0  # no compressed header, no developer field in these files
        if h & 0x40:
            n, endian = data[p + 5], ">" if data[p + 2] else "<"
            number = struct.unpack_from(endian + "H", data, p + 3)[0]
            layouts[h & 0x0F] = (number, sum(data[p + 7 + 3 * i] for i in range(n)))
            p += 6 + 3 * n
            continue
        number, size = layouts[h & 0x0F]
        if number == 20:
            seen += 1
            if seen == 3:
                return p
        p += 1 + size
    raise AssertionError("no third record")


def test_the_fit_reader_is_what_reading_uses():
    from geoheat import reading

    assert reading.READERS["fit"] is formats.read_fit
    assert Path(fit.__file__).name == "fit.py"


def test_an_unforeseen_error_in_the_fast_reader_falls_back_to_the_sdk(monkeypatch):
    def broken(data):
        raise IndexError("a bug")
    monkeypatch.setattr(fit, "scan_messages", broken)
    monkeypatch.setattr(fit, "read_fit_sdk", SDK)
    act, note = fit.read_fit(activity(POINTS[:7]).bytes(), "x.fit")
    assert act.points == 7 and note is None


# Damaged files (issue 19): a damaged message ends the reading, or its positions are left
# out; never a position off the track. tests/test_fuzz.py checks many mutations.

def off_track_km(lonlat_mutated, lonlat_original):
    """How far the farthest mutated position is from every original one (km, roughly)."""
    if not len(lonlat_mutated):
        return 0.0
    dlat = lonlat_mutated[:, None, 1] - lonlat_original[None, :, 1]
    dlon = (lonlat_mutated[:, None, 0] - lonlat_original[None, :, 0]) * np.cos(
        np.radians(lonlat_original[None, :, 1]))
    return float((np.hypot(dlat, dlon).min(axis=1) * 111.2).max())


def test_a_record_header_read_as_compressed_ends_the_reading(tmp_path):
    """The Fenix 2 case: the first record's header 0x03 with bit 7 set reads as a
    compressed-timestamp header of local type 0 (the file_id), of another size: the walk
    went on out of step and drew 2,808 positions near (0, 0), 6,575 km off."""
    name = "activity-small-fenix2-run.fit"
    data = (shared_folder("fit-tcx") / name).read_bytes()
    original = lonlat(fit.read_fit(data, name))
    at = fit_header_of_a_record(data) - 2 * 43  # the first record (43 bytes each)
    assert data[at] == 0x03
    damaged = bytearray(data)
    damaged[at] |= 0x80
    act, note = fit.read_fit(bytes(damaged), name)
    assert off_track_km(lonlat((act, note)), original) < 1
    assert "broken off" in note and "out of step" in note
    sdk, sdk_note = SDK(bytes(damaged), name)  # the SDK stops there too
    assert act.points == sdk.points == 0 and sdk_note
    from geoheat.reading import parse_file

    path = tmp_path / name
    path.write_bytes(damaged)
    assert parse_file(path).error == (  # not "no positions (an indoor activity?)"
        f"{path}: broken off before any position (a second file_id message (out of step) "
        f"at byte {at})")


@pytest.mark.parametrize("at", [5000, 40000, 90000, 120000])
def test_a_record_header_flipped_anywhere_never_draws_garbage(at):
    name = "activity-small-fenix2-run.fit"
    data = (shared_folder("fit-tcx") / name).read_bytes()
    original = lonlat(fit.read_fit(data, name))
    # the next record header at or after `at`: records are 43 bytes from byte 174
    at = 174 + -(-(at - 174) // 43) * 43
    assert data[at] == 0x03
    for value in (0x83, 0xA3, 0xC3, 0xE3, 0x00, 0x01, 0x02):
        damaged = bytearray(data)
        damaged[at] = value
        act, note = fit.read_fit(bytes(damaged), name)
        assert off_track_km(lonlat((act, note)), original) < 1, hex(value)
        assert note or value == 0xE3, hex(value)  # 0xE3: the same record, time compressed
        assert act.points >= (at - 174) // 43 - 3, hex(value)  # what came before stays


def test_a_flipped_coordinate_bit_is_left_out_when_the_crc_says_damaged():
    name = "garmin-fenix-5-run.fit"
    data = (shared_folder("fit-tcx") / name).read_bytes()
    original = lonlat(fit.read_fit(data, name))
    third = fit_header_of_a_record(data)
    lat = semicircles(original[2, 1])
    at = data.index(struct.pack("<i", lat), third)
    damaged = bytearray(data)
    damaged[at + 3] ^= 0x10  # bit 28 of its latitude: 22 degrees off
    act, note = fit.read_fit(bytes(damaged), name)
    assert act.points == len(original) - 1
    np.testing.assert_allclose(lonlat((act, note)), np.delete(original, 2, axis=0), atol=1e-7)
    assert note == (f"{name}: damaged (its CRC does not match); left out 1 position "
                    "out of step with the track")
    sdk, _ = SDK(bytes(damaged), name)  # the SDK draws it
    assert off_track_km(lonlat((sdk, None)), original) > 2000


def test_an_undamaged_file_keeps_its_glitches():
    """A GPS glitch in a file whose CRC matches (or has none) is the device's: kept."""
    points = POINTS[:30]
    points[10] = (104.06 + 3, 30.65)  # 300 km east for one record
    data = activity(points).bytes()  # CRC 0: not computed
    act, note = assert_same_as_sdk(data)
    assert act.points == 30 and note is None
    body = data[:-2]
    with_crc = body + struct.pack("<H", fitdamage.crc16(body))
    act, note = assert_same_as_sdk(with_crc)
    assert act.points == 30 and note is None
    wrong = body + struct.pack("<H", fitdamage.crc16(body) ^ 1)
    act, note = fit.read_fit(wrong, "x.fit")
    assert act.points == 29 and "CRC does not match" in note


# The start, the sport and unfinished files (issues 19 and 21).

START_TIME64 = (2, "Q", 0x8F)  # start_time declared as a uint64
SUB_SPORT, ELAPSED, DISTANCE = (6, "B", 0x00), (7, "I", 0x86), (9, "I", 0x86)


@pytest.mark.parametrize("start", [2**63, 2**40])
def test_an_absurd_session_start_is_an_unset_clock(tmp_path, start):
    """A session's start_time as a uint64 of 2^63 raised OverflowError outside the
    reader's try: all 21 positions were lost. Now the first record's time is the start."""
    from geoheat.reading import parse_file

    e = activity(POINTS[:21], session=False)
    e.define(2, 18, [TIMESTAMP, START_TIME64, SESSION_SPORT]).write(2, T0 + 30, start, 1)
    act, note = fit.read_fit(e.bytes(), "x.fit")
    assert act.points == 21 and act.start == fit_time(T0) and act.sport == "running"
    assert note is None
    path = tmp_path / "run.fit"
    path.write_bytes(e.bytes())
    parsed = parse_file(path)
    assert parsed.error is None and parsed.points == 21 and parsed.start == fit_time(T0)


def legs_file(legs, sport_message=None):
    """An activity of one record, then a session per leg: (sport, sub_sport, seconds,
    metres); or no session but a sport message of (sport, sub_sport)."""
    e = activity(POINTS[:5], session=False)
    if sport_message:
        e.define(3, 12, [SPORT_FIELD, (1, "B", 0x00)]).write(3, *sport_message)
    e.define(2, 18, [TIMESTAMP, START_TIME, SESSION_SPORT, SUB_SPORT, ELAPSED, DISTANCE])
    for i, (sport, sub_sport, seconds, metres) in enumerate(legs):
        e.write(2, T0 + 9000, T0 + i, sport, sub_sport, seconds * 1000, metres * 100)
    return e.bytes()


@pytest.mark.parametrize("legs, sport, kind", [
    # a triathlon: swim, transition, bike, transition, run: the longest leg, the ride
    ([(5, 17, 1800, 1500), (3, 0, 120, 0), (2, 7, 4000, 40000), (3, 0, 60, 0),
      (1, 0, 2700, 10000)], "cycling", "Ride"),
    # no distances: the longest leg by duration
    ([(5, 0, 1800, 0), (11, 0, 3600, 0)], "walking", "Walk"),
    ([(2, 58, 3600, 30000)], "VirtualRide", "VirtualRide"),  # Zwift
    ([(1, 58, 1800, 5000)], "VirtualRun", "VirtualRun"),
    ([(1, 1, 1800, 5000)], "running", "Run"),  # a treadmill: a Run, as Strava has it
    ([(2, 6, 3600, 30000)], "cycling", "Ride"),  # indoor_cycling: a trainer ride
    ([(2, 0, 3600, 30000)], "cycling", "Ride"),
], ids=["triathlon", "by-duration", "zwift", "virtual-run", "treadmill", "indoor", "ride"])
def test_the_sport_of_each_session(tmp_path, legs, sport, kind):
    from geoheat.reading import parse_file

    data = legs_file(legs)
    act, _ = assert_same_as_sdk(data)
    assert act.sport == sport
    path = tmp_path / "x.fit"
    path.write_bytes(data)
    assert parse_file(path).activity_type == kind


def test_a_virtual_sub_sport_in_the_sport_message():
    e = activity(POINTS[:5], session=False)
    e.define(3, 12, [SPORT_FIELD, (1, "B", 0x00)]).write(3, 2, 58)
    act, _ = fit.read_fit(e.bytes(), "x.fit")
    assert act.sport == "VirtualRide"


def test_an_unfinished_file_is_read_to_its_last_whole_message(tmp_path):
    """Issue 21: a recording never finalised (a crash, a flat battery) has 0 as the data
    size in its header: it was 'no positions (an indoor activity?)'."""
    from geoheat.reading import parse_file

    name = "activity-small-fenix2-run.fit"
    data = (shared_folder("fit-tcx") / name).read_bytes()
    finished, _ = fit.read_fit(data, name)
    unfinished = data[:4] + bytes(4) + data[8:]  # the data size zeroed
    for cut in (len(data), len(data) - 2, len(data) - 300, len(data) // 2):
        act, note = fit.read_fit(unfinished[:cut], name)
        assert note.startswith(f"{name}: unfinished (no data size in its header"), note
        assert f"{act.points:,} positions" in note
        expected = finished.points if cut >= len(data) - 300 else None
        if expected is not None:
            assert act.points == expected, cut
        else:
            assert 0.4 * finished.points < act.points < 0.6 * finished.points
        np.testing.assert_array_equal(lonlat((act, note)),
                                      lonlat((finished, None))[:act.points])
        assert act.start == finished.start  # the first record's time without a session
        assert act.sport == (finished.sport if cut >= len(data) - 2 else None)
    path = tmp_path / name
    path.write_bytes(unfinished)
    parsed = parse_file(path)
    assert parsed.error is None and parsed.points == finished.points
    assert parsed.note.startswith(f"{path}: unfinished")


# Local message types in turn (issue 27): every layout on the vectorised path.

def singles_counted(monkeypatch):
    """How many records the one-by-one path reads (what Scan.flush gathers)."""
    counted = []
    real = fitscan.Scan.flush

    def flush(scan):
        counted.append(len(scan.one_lat))
        real(scan)
    monkeypatch.setattr(fitscan.Scan, "flush", flush)
    return counted


def records_in_turn(points, layout):
    """The same records, written as `layout` says: 'one' local type; 'alternating' local
    types 1 and 2 of one definition; 'two-layouts' 1 and 2 with their fields in other
    orders; 'heart-rate' a message of another type after each record; 'three' local
    types 1, 2, 3 in turn, the third without a position; 'irregular' a heart-rate
    message after every 7th record, so cycles stop and start again."""
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 20, [TIMESTAMP, LAT, LON, SPEED])
    if layout == "two-layouts":
        e.define(2, 20, [SPEED, LON, TIMESTAMP, HEART_RATE, LAT], big=True)
    else:
        e.define(2, 20, [TIMESTAMP, LAT, LON, SPEED])
    e.define(3, 20, [TIMESTAMP, HEART_RATE]).define(4, 132, [TIMESTAMP, HEART_RATE])
    for i, (lon, lat) in enumerate(points):
        local = {"one": 1, "heart-rate": 1, "irregular": 1}.get(layout, 1 + i % 2)
        if layout == "three":
            local = 1 + i % 3  # 1, 2, 3, 1, 2, 3, ...
        if layout == "three" and i % 3 == 2:
            e.write(3, T0 + i, 120)  # a record without a position: no point
            continue
        if layout == "two-layouts" and local == 2:
            e.write(2, 500 + i, semicircles(lon), T0 + i, 130, semicircles(lat))
        else:
            e.write(local, T0 + i, semicircles(lat), semicircles(lon), 500 + i)
        if layout == "heart-rate" or (layout == "irregular" and i % 7 == 3):
            e.write(4, T0 + i, 130)
    e.define(5, 18, [TIMESTAMP, START_TIME, SESSION_SPORT]).write(5, T0 + 9999, T0, 2)
    return e.bytes()


@pytest.mark.parametrize("layout", ["alternating", "two-layouts", "heart-rate", "three",
                                    "irregular"])
def test_records_of_local_types_in_turn_read_as_one_type(monkeypatch, layout):
    """4 M records alternating two local types took 10.5 s and 641 MB, against 0.83 s
    and 305 MB in one type: they went one by one. Now cycles of local types are read at
    once, as runs of one are, with the same result as the one-type file."""
    points = POINTS * 4  # 1,200 records
    expected = fit.read_fit(records_in_turn(points, "one"), "x.fit")
    data = records_in_turn(points, layout)
    singles = singles_counted(monkeypatch)
    act, note = assert_same_as_sdk(data)
    assert note is None and act.start == expected[0].start and act.sport == "cycling"
    if layout == "three":  # every third record has no position
        keep = [i for i in range(len(points)) if i % 3 != 2]
        np.testing.assert_array_equal(lonlat((act, None)), lonlat(expected)[keep])
        np.testing.assert_array_equal(act.times[0], expected[0].times[0][keep])
    else:
        np.testing.assert_array_equal(lonlat((act, None)), lonlat(expected))
        np.testing.assert_array_equal(act.times[0], expected[0].times[0])
    # on the vectorised path: a few records one by one where cycles start, not 1,200
    assert sum(singles) <= (len(points) // 7 * 4 if layout == "irregular" else 10), singles


def test_a_cycle_broken_by_a_damaged_header_keeps_what_came_before():
    points = POINTS[:200]
    data = bytearray(records_in_turn(points, "alternating"))
    at = data.index(struct.pack("<I", T0 + 101)) - 1  # record 101's header
    data[at] = 0x09  # an undefined local type
    act, note = assert_same_as_sdk(bytes(data))
    np.testing.assert_allclose(act.segments[0], points[:101], atol=1e-7)
    assert "undefined local type 9" in note


@pytest.mark.parametrize("created", [T0 - 400 * 86400, T0 + 5 * 365 * 86400])
def test_a_damaged_file_created_long_before_or_after_keeps_its_positions(created):
    """time_created anchors the records' times only when some record agrees with it."""
    e = Encoder().define(0, 0, [FILE_TYPE, (4, "I", 0x86)]).write(0, 4, created)
    e.define(1, 20, [TIMESTAMP, LAT, LON])
    for i, (lon, lat) in enumerate(POINTS[:50]):
        e.write(1, T0 + i, semicircles(lat), semicircles(lon))
    act, note = assert_same_as_sdk(e.bytes()[:-20])  # broken off in the last records
    assert act.points == 48 and "broken off" in note and "left out" not in note


def test_records_read_from_no_value_bytes_are_left_out_of_a_damaged_file():
    """Seen in a fuzz run: a duplicated chunk made the walk read four records out of
    step, longitude 0xFFFFFFFF (-1 semicircle), latitude a counter, times plausible."""
    e = activity(POINTS[:30], session=False)
    for i in range(4):
        e.write(1, T0 + 40 + 20 * i, -16776405 + i, -1, 0)
    act, note = fit.read_fit(e.bytes()[:-2], "x.fit")  # no CRC: damaged
    np.testing.assert_allclose(act.segments[0], POINTS[:30], atol=1e-7)
    assert note.endswith("left out 4 positions out of step with the track")
    act, note = assert_same_as_sdk(e.bytes())  # a sound file keeps what it holds
    assert act.points == 34 and note is None


def test_a_lone_position_by_0_0_is_left_out_of_a_damaged_file():
    """Seen in a fuzz run: a deleted chunk in an indoor ride left one record whose
    position was 2 m from 0, 0 (the positions there are 'no value')."""
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4).define(1, 20, [TIMESTAMP, LAT, LON])
    for i in range(20):
        e.write(1, T0 + i, INVALID, INVALID)
    e.write(1, T0 + 20, -188, -129)
    act, note = fit.read_fit(e.bytes()[:-2], "x.fit")  # no CRC: damaged
    assert act.points == 0 and "left out 1 position" in note
    act, note = assert_same_as_sdk(e.bytes())  # a sound file keeps it
    assert act.points == 1 and note is None


def test_a_damaged_file_the_sdk_reads_leaves_out_positions_out_of_step(monkeypatch):
    """A layout the fast reader hands to the SDK (an unsigned latitude, here) gets the
    same damage check: a flipped coordinate in a file whose CRC does not match."""
    monkeypatch.setattr(fit, "read_fit_sdk", SDK)
    e = Encoder().define(0, 0, [FILE_TYPE]).write(0, 4)
    e.define(1, 20, [TIMESTAMP, (0, "I", 0x86), LON])
    for i, (lon, lat) in enumerate(POINTS[:30]):
        e.write(1, T0 + i, semicircles(lat + (20 if i == 12 else 0)), semicircles(lon))
    body = e.bytes()[:-2]
    act, note = fit.read_fit(body + struct.pack("<H", fitdamage.crc16(body)), "x.fit")
    assert act.points == 30 and note is None  # sound: the glitch is the device's
    act, note = fit.read_fit(body + struct.pack("<H", fitdamage.crc16(body) ^ 1), "x.fit")
    np.testing.assert_allclose(act.segments[0], POINTS[:12] + POINTS[13:30], atol=1e-7)
    assert note == ("x.fit: damaged (its CRC does not match); left out 1 position out of "
                    "step with the track")
