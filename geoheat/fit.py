"""FIT activities: positions, start time and sport, read fast; Garmin's SDK as the fallback.

geoheat needs four things from a FIT file: the record messages' positions, the
start time, the sport and, for a damaged file, where it broke off. Garmin's
official decoder (garmin-fit-sdk) decodes every field of every message in Python,
about 60 us a position (issue 15). This reader walks the message headers in
Python, skips every message it does not need by its size, and takes the
positions out of a run of consecutive records of one definition (all of one
size), or of a cycle of local types that repeats (records of two definitions in
turn, or a heart-rate message after each record), at once, as columns of numpy
structured views over the bytes: about
0.15 us a position, faster than every other decoder measured, fitfast's Rust
included (bench/bench_fit.py and bench/README.md give the numbers).

It reads what the SDK reads, and gives the same answer (tests/test_fit.py checks
every FIT file in ../shared against the SDK): the SDK stops at the first damaged
message and keeps what came before, and so does this reader. Unlike the SDK, it
draws nothing out of step from a damaged file (see _off_track), reads an unfinished
file (no data size in its header) to its last message, and types an activity by
all its sessions (activity_sport). Beyond the SDK it
reads compressed-timestamp headers (the SDK stops at them). A layout it does not
model (a position field that is not a 4-byte sint32, say) makes it hand the whole
file to the SDK (read_fit_sdk), which is also the reference the tests compare with.

Format notes (FIT protocol): a 12- or 14-byte file header (".FIT" at bytes 8-11, the
size of the records at bytes 4-7), the records, a 2-byte CRC (not checked here, nor
by geoheat's SDK call); several such files may be chained. Each record starts with
a byte: bit 7 set = a data message with a compressed timestamp (local type in bits
5-6, time offset in bits 0-4); else bit 6 set = a definition (bit 5: it also defines
developer fields), clear = a data message; the local type is in bits 0-3.
"""

import struct
from datetime import datetime, timezone

import numpy as np

from .errors import GPXError
from .gpx import Activity

SEMICIRCLE = 180.0 / 2**31  # degrees per FIT semicircle
FIT_EPOCH = 631065600  # 1989-12-31T00:00:00Z as Unix seconds

FILE_ID, SPORT, SESSION, RECORD = 0, 12, 18, 20  # global message numbers
TIMESTAMP = 253  # the timestamp field of any message
INVALID_SINT32 = 0x7FFFFFFF
INVALID_UINT32 = 0xFFFFFFFF

# The integer base types (low 5 bits of a field definition's base type byte):
# struct code and the value that means "no value". 0-16 are the valid base types.
_INTEGER_TYPES = {
    0: ("B", 0xFF), 1: ("b", 0x7F), 2: ("B", 0xFF), 3: ("h", 0x7FFF), 4: ("H", 0xFFFF),
    5: ("i", 0x7FFFFFFF), 6: ("I", 0xFFFFFFFF), 10: ("B", 0), 11: ("H", 0), 12: ("I", 0),
    13: ("B", 0xFF), 14: ("q", 2**63 - 1), 15: ("Q", 2**64 - 1), 16: ("Q", 0),
}
_BASE_TYPES = range(17)
# The fields read from each message type besides the timestamp (253).
# session: start_time, sport, sub_sport, total_elapsed_time, total_distance
_SESSION_FIELDS = (2, 5, 6, 7, 9)
_WANTED = {FILE_ID: (0, 4), SPORT: (0, 1), SESSION: _SESSION_FIELDS, RECORD: (0, 1)}


class _Unsupported(Exception):
    """A layout this reader does not model: the SDK reads the file instead."""


class _Broken(Exception):
    """The file breaks off or is damaged at byte `at`; what was read before it stands."""

    def __init__(self, at: int, reason: str):
        super().__init__(f"{reason} at byte {at}")


class _Field:
    """One field of a definition that geoheat reads: where it is and how to unpack it."""

    __slots__ = ("offset", "format", "invalid", "size", "base")

    def __init__(self, offset: int, size: int, base: int, endian: str):
        self.offset, self.size, self.base = offset, size, base
        code, self.invalid = _INTEGER_TYPES.get(base, (None, None))
        self.format = struct.Struct(endian + code) if code else None

    def value(self, data: bytes, start: int):
        """The field's value in the message at `start` (its header byte), None if invalid."""
        if self.format is None or self.format.size != self.size:
            raise _Unsupported("a field that is not one integer")
        value = self.format.unpack_from(data, start + self.offset)[0]
        return None if value == self.invalid else value

    def value_or_none(self, data: bytes, start: int):
        """value(), or None for a field that is not one integer (a damaged definition,
        say): the file_id, session and sport fields are not worth the SDK's reading."""
        if self.format is None or self.format.size != self.size:
            return None
        return self.value(data, start)


class _Definition:
    """A definition message: the global message number, the size of its data messages
    (header byte included: the stride of a run of them) and the fields geoheat reads."""

    __slots__ = ("number", "stride", "fields", "timestamp", "dtype", "position")

    def __init__(self, number: int, stride: int, fields: dict, endian: str):
        self.number, self.stride, self.fields = number, stride, fields
        self.timestamp = fields.get(TIMESTAMP)
        if self.timestamp is not None and (self.timestamp.format is None
                                           or self.timestamp.format.size != self.timestamp.size):
            self.timestamp = None  # not one integer: not a time reference
        self.dtype = self.position = None
        if number == RECORD:
            columns = {}
            for key, num, base in (("lat", 0, 5), ("lon", 1, 5), ("time", TIMESTAMP, 6)):
                field = fields.get(num)
                if field is None:
                    continue
                if field.size != 4 or field.base != base:
                    raise _Unsupported(f"a record field {num} of base type {field.base}")
                columns[key] = (np.dtype(endian + ("i4" if base == 5 else "u4")), field.offset)
            if "lat" in columns and "lon" in columns:
                self.position = fields[0], fields[1]
            else:  # no position in these records
                columns.pop("lat", None), columns.pop("lon", None)
            self.dtype = np.dtype({"names": list(columns),
                                   "formats": [c[0] for c in columns.values()],
                                   "offsets": [c[1] for c in columns.values()],
                                   "itemsize": stride})


def _header(data: bytes, at: int) -> tuple[int, int] | None:
    """(header size, records size) of a FIT file header at `at`; None if there is none.
    The same test as the SDK's Decoder.is_fit."""
    if at >= len(data) or data[at] not in (12, 14) or len(data) < data[at] + 2:
        return None
    if len(data) < at + data[at] or data[at + 8:at + 12] != b".FIT":
        return None
    return data[at], int.from_bytes(data[at + 4:at + 8], "little")


def _definition_end(data: bytes, p: int, header: int) -> int:
    """Where the definition message at p ends."""
    size = len(data)
    q = p + 6 + 3 * data[p + 5] if p + 6 <= size else size + 1
    if header & 0x20 and q < size:  # developer field definitions follow
        q += 1 + 3 * data[q]
    elif header & 0x20:
        q = size + 1
    if q > size:
        raise _Broken(p, "ends inside a definition")
    return q


def _definition(data: bytes, p: int, header: int) -> _Definition:
    """The definition message at p."""
    endian = "<" if data[p + 2] == 0 else ">"
    number = int.from_bytes(data[p + 3:p + 5], "little" if endian == "<" else "big")
    q = p + 6 + 3 * data[p + 5]
    wanted = _WANTED.get(number, ())
    fields, offset = {}, 1  # offsets count from the data message's header byte
    for i in range(p + 6, q, 3):
        num, field_size, base = data[i], data[i + 1], data[i + 2] & 0x1F
        if base not in _BASE_TYPES:
            raise _Broken(i, "invalid field base type")
        if num in wanted or num == TIMESTAMP:
            if num in fields:  # the SDK keeps the last valid one: not modelled here
                raise _Unsupported(f"field {num} twice in one definition")
            fields[num] = _Field(offset, field_size, base, endian)
        offset += field_size
    if header & 0x20:  # developer fields: only their sizes matter here
        offset += sum(data[q + 2:q + 1 + 3 * data[q]:3])
    return _Definition(number, offset, fields, endian)


class _Scan:
    """What a walk over the messages found."""

    def __init__(self):
        self.lat: list[np.ndarray] = []  # position columns, one per run of records
        self.lon: list[np.ndarray] = []
        self.time: list[np.ndarray] = []  # their timestamps (INVALID_UINT32: none)
        self.one_lat: list[int] = []  # positions of single records, not yet in self.lat
        self.one_lon: list[int] = []
        self.one_time: list[int] = []
        self.records = 0
        self.first_time = None  # the first record's timestamp
        self.file_type = self.sport = None
        self.sessions: list[tuple] = []  # each session's _SESSION_FIELDS' values
        self.unfinished = False  # a header with no data size: read to the last message
        self.created = None  # the file_id's time_created
        self.file_ids = 0
        self.problem = None
        self.files: list[tuple[int, int]] = []  # each chained file read whole: (start, CRC at)

    def flush(self):
        """The single records' positions read so far, as a column (kept in file order)."""
        if self.one_lat:
            self.lat.append(np.array(self.one_lat, np.int64))
            self.lon.append(np.array(self.one_lon, np.int64))
            self.time.append(np.array(self.one_time, np.int64))
            self.one_lat, self.one_lon, self.one_time = [], [], []


def _run_length(codes: np.ndarray, p: int, stride: int, header: int, most: int) -> int:
    """How many messages from p on (at most `most`, two known) begin with `header`."""
    k, chunk = 2, 32
    while k < most:
        stop = min(most, k + chunk)
        differ = np.flatnonzero(codes[p + k * stride:p + stop * stride:stride] != header)
        if differ.size:
            return k + int(differ[0])
        k, chunk = stop, chunk * 4
    return most


CYCLE_PERIODS = range(2, 5)  # cycles of 2 to 4 messages (1: a run, read apart)


def _cycle(data: bytes, p: int, end: int, definitions: list) -> tuple | int:
    """A cycle of data messages from p on: ((offset, header, definition) of each, its
    length in bytes), if the next messages repeat one of CYCLE_PERIODS messages twice;
    else where the messages looked at end (no cycle starts before). Only records and
    messages geoheat skips take part (file_id, session, sport are read one by one)."""
    seen, q = [], p
    while len(seen) < 2 * CYCLE_PERIODS[-1] and q < end:
        header = data[q]
        d = definitions[header & 0x0F] if not header & 0xC0 else None
        if d is None or d.number in (FILE_ID, SESSION, SPORT) or q + d.stride > end:
            break
        seen.append((q - p, header, d))
        q += d.stride
    for m in CYCLE_PERIODS:
        if len(seen) >= 2 * m and all(seen[i][1] == seen[i - m][1] for i in range(m, 2 * m)):
            return seen[:m], seen[m][0]
    return q


def _read_cycle(scan: _Scan, codes: np.ndarray, data: bytes, p: int, end: int,
                cycle: tuple) -> tuple[int, int | None]:
    """Read the repeats of a cycle from p on (two at least, known): the records'
    positions as columns, in file order. Where the repeats end, and the last timestamp."""
    members, length = cycle
    most = min(end, len(data)) - p
    most = (most - max(offset + d.stride for offset, _, d in members)) // length + 1
    repeats = min(_run_length(codes, p + offset, length, header, most)
                  for offset, header, _ in members)
    records = [(offset, d) for offset, _, d in members if d.number == RECORD]
    scan.records += repeats * len(records)
    columns = {"lat": [], "lon": [], "time": []}
    for offset, d in records:
        view = np.ndarray((repeats,), d.dtype, data, p + offset, (length,))
        for name in ("lat", "lon", "time"):
            columns[name].append(view[name] if name in d.dtype.names else None)
    if records:
        scan.flush()
        times = [t if t is not None else np.full(repeats, INVALID_UINT32, np.uint32)
                 for t in columns["time"]]
        # Records of several definitions: interleaved back in file order.
        times = np.column_stack(times).ravel() if len(times) > 1 else times[0]
        placed = [i for i, lat in enumerate(columns["lat"]) if lat is not None]
        if len(placed) == len(records):
            for name, column in (("lat", columns["lat"]), ("lon", columns["lon"])):
                getattr(scan, name).append(np.column_stack(column).ravel()
                                           if len(column) > 1 else column[0])
            scan.time.append(times)
        elif placed:  # some definitions without a position: the others' records only
            for name in ("lat", "lon"):
                getattr(scan, name).append(np.column_stack(
                    [columns[name][i] for i in placed]).ravel())
            scan.time.append(np.column_stack(
                [times.reshape(repeats, -1)[:, i] for i in placed]).ravel())
        good = times != INVALID_UINT32
        if scan.first_time is None and good.any():
            scan.first_time = int(times[int(np.argmax(good))])
    last = p + (repeats - 1) * length
    stamp = None
    for offset, _, d in reversed(members):  # the last timestamp of the last repeat
        if d.timestamp is not None:
            stamp = d.timestamp.value(data, last + offset)
            if stamp is not None:
                break
    return p + repeats * length, stamp


def _scan(data: bytes) -> _Scan:
    """Walk every message of every chained FIT file in data."""
    scan, size = _Scan(), len(data)
    codes = np.frombuffer(data, np.uint8)
    definitions: list[_Definition | None] = [None] * 16  # by local message type
    known: dict[bytes, _Definition] = {}  # by the definition message's bytes
    last_time = None  # the time reference of compressed timestamps
    no_cycle_before = 0  # _cycle found none starting before this byte
    start = 0
    try:
        while start < size:
            found = _header(data, start)
            if found is None:
                raise _Broken(start, "no FIT file header")
            header_size, records_size = found
            if records_size == 0 and size > start + header_size + 2:
                # Never finalised (a crash, a flat battery): the records run to the end.
                scan.unfinished, records_size = True, size - start - header_size
            p, end = start + header_size, min(start + header_size + records_size, size)
            while p < end:
                header = data[p]
                if header & 0x80:  # compressed timestamp header: one message
                    local, offset = (header >> 5) & 3, header & 0x1F
                    d = definitions[local]
                    if d is None:
                        raise _Broken(p, f"a message of undefined local type {local}")
                    if p + d.stride > size:
                        raise _Broken(p, "ends inside a message")
                    if last_time is not None:
                        last_time = (last_time & ~0x1F) + offset + (
                            0x20 if offset < (last_time & 0x1F) else 0)
                    if d.number == RECORD:
                        scan.records += 1
                        if d.position is not None:
                            lat, lon = d.position
                            scan.one_lat.append(lat.format.unpack_from(data, p + lat.offset)[0])
                            scan.one_lon.append(lon.format.unpack_from(data, p + lon.offset)[0])
                            scan.one_time.append(INVALID_UINT32 if last_time is None
                                                 else last_time)
                        if scan.first_time is None and last_time is not None:
                            scan.first_time = last_time
                    else:
                        _other(scan, d, data, p)
                    p += d.stride
                    continue
                if header & 0x40:
                    # Devices repeat the same definitions: each distinct one is parsed once.
                    q = _definition_end(data, p, header)
                    key = data[p + 1:q] if not header & 0x20 else b"D" + data[p + 1:q]
                    d = known.get(key)
                    if d is None:
                        d = known[key] = _definition(data, p, header)
                    definitions[header & 0x0F] = d
                    p = q
                    continue
                d = definitions[header & 0x0F]
                if d is None:
                    raise _Broken(p, f"a message of undefined local type {header & 0x0F}")
                stride = d.stride
                if p + stride > size:
                    raise _Broken(p, "ends inside a message")
                k = 1
                nxt = p + stride
                if nxt + stride <= size and nxt < end and data[nxt] == header:
                    most = min((end - p + stride - 1) // stride, (size - p) // stride)
                    k = _run_length(codes, p, stride, header, most)
                elif p >= no_cycle_before:
                    # Messages of several local types in turn (two record definitions,
                    # or a heart-rate message after each record): a cycle of them read
                    # at once, as one run is (issue 27).
                    cycle = _cycle(data, p, end, definitions)
                    if isinstance(cycle, int):
                        no_cycle_before = cycle  # none starts before there: no new look
                    else:
                        p, stamp = _read_cycle(scan, codes, data, p, end, cycle)
                        if stamp is not None:
                            last_time = stamp
                        continue
                if d.number == RECORD and k == 1:  # struct beats numpy for one
                    scan.records += 1
                    stamp = d.timestamp.value(data, p) if d.timestamp is not None else None
                    if d.position is not None:
                        lat, lon = d.position
                        scan.one_lat.append(lat.format.unpack_from(data, p + lat.offset)[0])
                        scan.one_lon.append(lon.format.unpack_from(data, p + lon.offset)[0])
                        scan.one_time.append(INVALID_UINT32 if stamp is None else stamp)
                    if stamp is not None:
                        last_time = stamp
                        if scan.first_time is None:
                            scan.first_time = stamp
                elif d.number == RECORD:
                    scan.records += k
                    scan.flush()
                    view = np.frombuffer(data, d.dtype, k, p)
                    names = d.dtype.names
                    if "lat" in names:
                        scan.lat.append(view["lat"])
                        scan.lon.append(view["lon"])
                        scan.time.append(view["time"] if "time" in names
                                         else np.full(k, INVALID_UINT32, np.uint32))
                    if "time" in names:
                        times = view["time"]
                        good = times != INVALID_UINT32
                        if scan.first_time is None and good.any():
                            scan.first_time = int(times[int(np.argmax(good))])
                        if good[-1]:
                            last_time = int(times[-1])
                else:
                    _other(scan, d, data, p, k)
                    if d.timestamp is not None:
                        last = d.timestamp.value(data, p + (k - 1) * stride)
                        if last is not None:
                            last_time = last
                p += k * stride
            if scan.unfinished:
                break  # no CRC follows
            if p < start + header_size + records_size:
                raise _Broken(p, "ends before its last message")
            if p + 2 > size:
                raise _Broken(p, "the CRC is missing")
            scan.files.append((start, p))
            start = p + 2
    except _Broken as err:
        scan.problem = str(err)
    scan.flush()
    return scan


def _other(scan: _Scan, d: _Definition, data: bytes, p: int, count: int = 1) -> None:
    """The first file_id, session and sport message: the file type, start and sport.
    `count` messages of this definition from p on. A second file_id in one file (a FIT
    file has one) is where a damaged file's walk went out of step: it ends the reading."""
    if d.number == FILE_ID:
        if scan.file_ids > len(scan.files) or count > 1:
            at = p if scan.file_ids > len(scan.files) else p + d.stride
            raise _Broken(at, "a second file_id message (out of step)")
        if not scan.file_ids:
            field, created = d.fields.get(0), d.fields.get(4)
            scan.file_type = field.value_or_none(data, p) if field else None
            scan.created = created.value_or_none(data, p) if created else None
        scan.file_ids += 1
    elif d.number == SESSION:  # every session: a multisport file has one a leg
        for at in range(p, p + count * d.stride, d.stride):
            scan.sessions.append(tuple(d.fields[n].value_or_none(data, at)
                                       if n in d.fields else None for n in _SESSION_FIELDS))
    elif d.number == SPORT and scan.sport is None:
        scan.sport = tuple(d.fields[n].value_or_none(data, p) if n in d.fields else None
                           for n in (0, 1))


def _names(kind: str) -> dict:
    """The FIT profile's names of an enum type ('sport', 'file'), from the SDK's profile."""
    from garmin_fit_sdk.profile import Profile

    return Profile["types"].get(kind) or {}


def _time(value: int | None) -> datetime | None:
    """A FIT time as a datetime; None for one no calendar holds (a uint64 field of 2^63:
    an unset clock, say)."""
    if value is None or not 0 <= value <= 0xFFFFFFFF:
        return None
    return datetime.fromtimestamp(value + FIT_EPOCH, timezone.utc)


# Strava's type for a sub-sport that changes it: Zwift's rides are cycling with the
# sub-sport virtual_activity, a virtual run running with it. A treadmill run stays a Run
# (as Strava types a Garmin treadmill run), like a trainer ride stays a Ride.
_VIRTUAL = {("cycling", "virtual_activity"): "VirtualRide",
            ("running", "virtual_activity"): "VirtualRun"}


def activity_sport(legs: list[tuple]) -> str | None:
    """The sport of an activity from its sessions' (sport, sub-sport, seconds, metres),
    named as the FIT profile names them: a multisport file (a triathlon: swim, bike, run,
    and transitions between) takes its longest leg's sport, by distance (by duration if
    none has a distance); Zwift's rides are VirtualRide, virtual runs VirtualRun."""
    legs = [leg for leg in legs if leg[0] not in (None, "transition")]
    if not legs:
        return None
    if len(legs) > 1:
        by = 3 if any(leg[3] for leg in legs) else 2
        legs = [max(legs, key=lambda leg: leg[by] or 0)]  # the first of equals
    sport, sub_sport = (str(x) if x is not None else None for x in legs[0][:2])
    return _VIRTUAL.get((sport, sub_sport), sport)


# A damaged file (issue 19): one changed byte can make a position thousands of km off
# (a flipped coordinate bit), or make the walk read the rest of the file out of step,
# drawing garbage that looks like a track. Such positions are left out of a damaged file
# only: one that broke off, or whose CRC does not match. Undamaged files keep every
# position, GPS glitches included, exactly as the SDK reads them.
NEAR_KM = 1.0  # a position this close to a trusted neighbour (+-2 records) is on the track
NEAR_SEMICIRCLES = NEAR_KM / 111.195 / SEMICIRCLE  # NEAR_KM in semicircles of latitude
TIME_SPAN_DAYS = 30  # a record timed this far from the others' median is out of step
_CRC_TABLE = None


def crc16(data: bytes) -> int:
    """The FIT CRC (CRC-16/ARC) of data. Vectorised over lanes of the bytes (the CRC is
    linear, so the lanes' CRCs combine): about 10 ms a megabyte where plain Python takes
    a second; needed only to tell whether a suspect file is damaged."""
    global _CRC_TABLE
    if _CRC_TABLE is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
            table.append(c)
        _CRC_TABLE = np.array(table, np.int64)
    table, n = _CRC_TABLE, len(data)
    if n < 4096:
        crc, plain = 0, _CRC_TABLE.tolist()
        for byte in data:
            crc = (crc >> 8) ^ plain[(crc ^ byte) & 0xFF]
        return crc
    width = max(64, int(n ** 0.5) // 8)
    lanes = -(-n // width)
    padded = np.zeros(lanes * width, np.uint8)  # leading zeros leave a CRC-16/ARC at 0
    padded[lanes * width - n:] = np.frombuffer(data, np.uint8)
    columns = np.ascontiguousarray(padded.reshape(lanes, width).T).astype(np.int64)
    crc = np.zeros(lanes, np.int64)
    for column in columns:
        crc = (crc >> 8) ^ table[(crc ^ column) & 0xFF]
    # What `width` zero bytes make of each bit of a CRC: combine lane after lane.
    bits = np.int64(1) << np.arange(16, dtype=np.int64)
    for _ in range(width):
        bits = (bits >> 8) ^ table[bits & 0xFF]
    values = np.arange(256)
    low = np.bitwise_xor.reduce(np.where((values[:, None] >> np.arange(8)) & 1, bits[:8], 0),
                                axis=1).tolist()
    high = np.bitwise_xor.reduce(np.where((values[:, None] >> np.arange(8)) & 1, bits[8:], 0),
                                 axis=1).tolist()
    total = 0
    for lane in crc.tolist():
        total = low[total & 0xFF] ^ high[total >> 8] ^ lane
    return total


def _crc_mismatch(data: bytes, files: list[tuple[int, int]]) -> bool:
    """Whether a chained file's CRC does not match its bytes (a stored 0: not computed)."""
    for start, at in files:
        stored = int.from_bytes(data[at:at + 2], "little")
        if stored and crc16(data[start:at]) != stored:
            return True
    return False


def _off_track(lat: np.ndarray, lon: np.ndarray, stamps: np.ndarray,
               created: int | None = None) -> np.ndarray:
    """Which positions (semicircles, in file order; stamps INVALID_UINT32 where none) are
    out of step with the others: timed far from the file's time_created (`created`, a
    time some record agrees with) or from the others' median, or as the record before
    or after, or with a coordinate of 0 or -1 semicircles, or by 0, 0; or more than
    NEAR_KM from every trusted position among the two records before and after. A
    damaged file leaves these out. Cheap for a sound track: a few tests on consecutive
    steps."""
    n = len(lat)
    suspect = np.zeros(n, bool)
    timed = stamps != INVALID_UINT32
    if np.count_nonzero(timed) >= 3:
        span = TIME_SPAN_DAYS * 86400
        seconds = stamps if timed.all() else stamps[timed]
        if seconds.max() - seconds.min() > span:
            suspect[timed] = np.abs(seconds - np.median(seconds)) > span
        # A record timed as the one before or after it: an out-of-step walk reads the
        # same bytes as the time of record after record (a device moves on between them).
        same = timed[1:] & (stamps[1:] == stamps[:-1])
        suspect[1:] |= same
        suspect[:-1] |= same
    if created is not None:
        suspect |= timed & (np.abs(stamps - created) > TIME_SPAN_DAYS * 86400)
    # A coordinate of 0 or -1 semicircles, or both within NEAR_KM of 0, 0: zero or 0xFF
    # bytes (an unsigned field's "no value") read as a position. Still kept if a trusted
    # neighbour is near.
    suspect |= (lat == 0) | (lat == -1) | (lon == 0) | (lon == -1)
    suspect |= (np.abs(lat) <= NEAR_SEMICIRCLES) & (np.abs(lon) <= NEAR_SEMICIRCLES)
    if n < 2:  # a lone position: no neighbour vouches for it
        return np.ones(n, bool)
    if not suspect.any():
        step = np.abs(np.subtract(lat[1:], lat[:-1], dtype=np.int64))
        np.maximum(step, np.abs(np.subtract(lon[1:], lon[:-1], dtype=np.int64)), out=step)
        if step.max() <= NEAR_SEMICIRCLES / 2**0.5:
            return suspect  # every position within NEAR_KM of the next one
    lat64, lon64 = lat.astype(np.int64), lon.astype(np.int64)
    coslat = np.cos(np.radians(lat64 * SEMICIRCLE))
    closes = []  # (k, whether position i and i + k are within NEAR_KM)
    for k in (1, 2):
        if k < n:
            dy = (lat64[k:] - lat64[:-k]).astype(float)
            dx = ((lon64[k:] - lon64[:-k] + 2**31) % 2**32 - 2**31) * np.minimum(
                coslat[k:], coslat[:-k])
            closes.append((k, np.hypot(dx, dy) <= NEAR_SEMICIRCLES))
    trusted = ~suspect
    while True:  # a trusted position no trusted neighbour vouches for is trusted no more
        near = np.zeros(n, bool)
        for k, close in closes:
            near[k:] |= close & trusted[:-k]
            near[:-k] |= close & trusted[k:]
        if not (trusted & ~near).any():
            return ~near
        trusted &= near


def read_fit(data: bytes, name: str) -> tuple[Activity, str | None]:
    """A FIT file's positions as one segment; and a note if it broke off early (or was
    damaged: then positions out of step with the track are left out)."""
    if _header(data, 0) is None:
        raise GPXError(f"{name}: not a FIT file")
    try:
        scan = _scan(data)
    except Exception:  # a layout not modelled here (_Unsupported), or not foreseen
        return _sdk_checked(read_fit_sdk(data, name), data)
    if scan.file_type not in (None, 4) and not scan.records:  # 4: activity
        kind = _names("file").get(scan.file_type, scan.file_type)
        raise GPXError(f"{name}: not an activity (a FIT {kind} file)")
    lat = np.concatenate(scan.lat) if scan.lat else np.empty(0, np.int32)
    lon = np.concatenate(scan.lon) if scan.lon else np.empty(0, np.int32)
    stamps = np.concatenate(scan.time).astype(np.int64) if scan.time else np.empty(0, np.int64)
    valid = (lat != INVALID_SINT32) & (lon != INVALID_SINT32)
    left_out = 0
    if valid.any():
        # The file_id's time_created anchors the records' times if it is a calendar
        # time some record agrees with (not one written long after, say).
        created = scan.created
        if created is None or created < 0x10000000 or not (
                np.abs(stamps - created) <= TIME_SPAN_DAYS * 86400).any():
            created = None
        off = _off_track(lat[valid], lon[valid], stamps[valid], created)
        if off.any() and (scan.problem or scan.unfinished
                          or _crc_mismatch(data, scan.files)):
            left_out = int(off.sum())
            valid[np.flatnonzero(valid)[off]] = False
    points = int(valid.sum())
    segments = [np.column_stack([lon[valid], lat[valid]]) * SEMICIRCLE] if points else []
    # Each position's time, POSIX seconds (NaN where its record had none): the gap rule.
    stamps = stamps[valid]
    seconds = np.where(stamps == INVALID_UINT32, np.nan, (stamps + FIT_EPOCH).astype(float))
    times = [seconds] if points and np.isfinite(seconds).any() else None
    # As the SDK path: the first session's start time, else the first record's timestamp;
    # the sessions' sport (activity_sport), else the first sport message's.
    start = _time(scan.sessions[0][0]) if scan.sessions else None
    if start is None:
        start = _time(scan.first_time)
    sports, sub_sports = _names("sport"), _names("sub_sport")
    legs = [(sports.get(sport, sport), sub_sports.get(sub, sub), seconds, metres)
            for _, sport, sub, seconds, metres in scan.sessions]
    if not legs and scan.sport is not None:
        legs = [(sports.get(scan.sport[0], scan.sport[0]),
                 sub_sports.get(scan.sport[1], scan.sport[1]), None, None)]
    sport = activity_sport(legs)
    note = None
    if scan.unfinished:
        note = (f"{name}: unfinished (no data size in its header: a recording never "
                f"finalised?); read to its last whole message, {points:,} positions")
    elif scan.problem and not points:  # parse_file gives this as the reason it skips
        note = f"{name}: broken off before any position ({scan.problem})"
    elif scan.problem:
        note = f"{name}: broken off ({scan.problem}); kept the {points:,} positions before it"
    if left_out:
        damage = note or f"{name}: damaged (its CRC does not match)"
        note = (f"{damage}; left out {left_out:,} position{'s' if left_out > 1 else ''} "
                "out of step with the track")
    return Activity(name, segments, start, 0, 0, sport or None, times), note


def _sdk_checked(result: tuple[Activity, str | None], data: bytes
                 ) -> tuple[Activity, str | None]:
    """The SDK's reading of a file the fast reader handed over, with positions out of
    step left out as read_fit leaves them out (if the file is damaged: the SDK stopped
    early, or the CRC does not match)."""
    activity, note = result
    if not activity.segments:
        return result
    lonlat = activity.segments[0]
    seconds = activity.times[0] if activity.times else np.full(len(lonlat), np.nan)
    stamps = np.where(np.isfinite(seconds), np.nan_to_num(seconds) - FIT_EPOCH,
                      INVALID_UINT32).astype(np.int64)
    off = _off_track(np.round(lonlat[:, 1] / SEMICIRCLE).astype(np.int64),
                     np.round(lonlat[:, 0] / SEMICIRCLE).astype(np.int64), stamps)
    header_size, records_size = _header(data, 0)
    if not off.any() or not (note or _crc_mismatch(data, [(0, header_size + records_size)])):
        return result
    keep = ~off
    damage = note or f"{activity.path}: damaged (its CRC does not match)"
    note = (f"{damage}; left out {int(off.sum()):,} position{'s' if off.sum() > 1 else ''} "
            "out of step with the track")
    segments = [lonlat[keep]] if keep.any() else []
    times = [seconds[keep]] if activity.times and keep.any() else None
    return activity._replace(segments=segments, times=times), note


def read_fit_sdk(data: bytes, name: str) -> tuple[Activity, str | None]:
    """read_fit through Garmin's FIT SDK: the fallback, and the reference in the tests."""
    from garmin_fit_sdk import Decoder, Stream  # imported on use: most inputs are GPX

    decoder = Decoder(Stream.from_byte_array(bytearray(data)))
    if not decoder.is_fit():
        raise GPXError(f"{name}: not a FIT file")
    messages, errors = decoder.read(
        apply_scale_and_offset=True, convert_datetimes_to_dates=True,
        convert_types_to_strings=True, expand_sub_fields=False, expand_components=False,
        enable_crc_check=False, merge_heart_rates=False)
    file_type = (messages.get("file_id_mesgs") or [{}])[0].get("type")
    records = messages.get("record_mesgs", [])
    if file_type not in (None, "activity") and not records:
        raise GPXError(f"{name}: not an activity (a FIT {file_type} file)")
    placed = [r for r in records
              if r.get("position_lat") is not None and r.get("position_long") is not None]
    lat = np.array([r["position_lat"] for r in placed], dtype=float)
    lon = np.array([r["position_long"] for r in placed], dtype=float)
    seconds = np.array([r["timestamp"].timestamp() if isinstance(r.get("timestamp"), datetime)
                        else np.nan for r in placed], dtype=float)
    times = [seconds] if len(seconds) and np.isfinite(seconds).any() else None
    sessions = messages.get("session_mesgs") or messages.get("sport_mesgs") or [{}]
    start = sessions[0].get("start_time")
    if not isinstance(start, datetime):  # none, or no calendar time
        start = next((r["timestamp"] for r in records
                      if isinstance(r.get("timestamp"), datetime)), None)
    segments = [np.column_stack([lon, lat]) * SEMICIRCLE] if len(lat) else []
    note = None
    if errors:
        note = f"{name}: broken off ({errors[0]}); kept the {len(lat):,} positions before it"
    sport = activity_sport([(x.get("sport"), x.get("sub_sport"), x.get("total_elapsed_time"),
                             x.get("total_distance")) for x in sessions])
    return Activity(name, segments, start if isinstance(start, datetime) else None, 0, 0,
                    sport or None, times), note
