"""The walk over a FIT file's messages: the record messages' positions and times, the
file type, the sessions and the sport; where a damaged file broke off.

Every message geoheat does not need is skipped by its size. The positions of a run of
consecutive records of one definition (all of one size), or of a cycle of local types
that repeats (records of two definitions in turn, or a heart-rate message after each
record), are taken at once, as columns of numpy structured views over the bytes.
"""

import numpy as np

from .fitformat import (FILE_ID, INVALID_UINT32, RECORD, SESSION, SESSION_FIELDS, SPORT,
                        Broken, Definition, definition, definition_end, file_header)


class Scan:
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
        self.sessions: list[tuple] = []  # each session's SESSION_FIELDS' values
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


def _read_cycle(scan: Scan, codes: np.ndarray, data: bytes, p: int, end: int,
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


def scan_messages(data: bytes) -> Scan:
    """Walk every message of every chained FIT file in data."""
    scan, size = Scan(), len(data)
    codes = np.frombuffer(data, np.uint8)
    definitions: list[Definition | None] = [None] * 16  # by local message type
    known: dict[bytes, Definition] = {}  # by the definition message's bytes
    last_time = None  # the time reference of compressed timestamps
    no_cycle_before = 0  # _cycle found none starting before this byte
    start = 0
    try:
        while start < size:
            found = file_header(data, start)
            if found is None:
                raise Broken(start, "no FIT file header")
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
                        raise Broken(p, f"a message of undefined local type {local}")
                    if p + d.stride > size:
                        raise Broken(p, "ends inside a message")
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
                    q = definition_end(data, p, header)
                    key = data[p + 1:q] if not header & 0x20 else b"D" + data[p + 1:q]
                    d = known.get(key)
                    if d is None:
                        d = known[key] = definition(data, p, header)
                    definitions[header & 0x0F] = d
                    p = q
                    continue
                d = definitions[header & 0x0F]
                if d is None:
                    raise Broken(p, f"a message of undefined local type {header & 0x0F}")
                stride = d.stride
                if p + stride > size:
                    raise Broken(p, "ends inside a message")
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
                raise Broken(p, "ends before its last message")
            if p + 2 > size:
                raise Broken(p, "the CRC is missing")
            scan.files.append((start, p))
            start = p + 2
    except Broken as err:
        scan.problem = str(err)
    scan.flush()
    return scan


def _other(scan: Scan, d: Definition, data: bytes, p: int, count: int = 1) -> None:
    """The first file_id, session and sport message: the file type, start and sport.
    `count` messages of this definition from p on. A second file_id in one file (a FIT
    file has one) is where a damaged file's walk went out of step: it ends the reading."""
    if d.number == FILE_ID:
        if scan.file_ids > len(scan.files) or count > 1:
            at = p if scan.file_ids > len(scan.files) else p + d.stride
            raise Broken(at, "a second file_id message (out of step)")
        if not scan.file_ids:
            field, created = d.fields.get(0), d.fields.get(4)
            scan.file_type = field.value_or_none(data, p) if field else None
            scan.created = created.value_or_none(data, p) if created else None
        scan.file_ids += 1
    elif d.number == SESSION:  # every session: a multisport file has one a leg
        for at in range(p, p + count * d.stride, d.stride):
            scan.sessions.append(tuple(d.fields[n].value_or_none(data, at)
                                       if n in d.fields else None for n in SESSION_FIELDS))
    elif d.number == SPORT and scan.sport is None:
        scan.sport = tuple(d.fields[n].value_or_none(data, p) if n in d.fields else None
                           for n in (0, 1))
