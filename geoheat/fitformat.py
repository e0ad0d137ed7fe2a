"""The FIT protocol as geoheat reads it: file headers, and definition messages turned
into the layout of their data messages (the fields geoheat reads, where they are).

Format notes (FIT protocol): a 12- or 14-byte file header (".FIT" at bytes 8-11, the
size of the records at bytes 4-7), the records, a 2-byte CRC (not checked here, nor
by geoheat's SDK call); several such files may be chained. Each record starts with
a byte: bit 7 set = a data message with a compressed timestamp (local type in bits
5-6, time offset in bits 0-4); else bit 6 set = a definition (bit 5: it also defines
developer fields), clear = a data message; the local type is in bits 0-3.
"""

import struct

import numpy as np

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
SESSION_FIELDS = (2, 5, 6, 7, 9)
_WANTED = {FILE_ID: (0, 4), SPORT: (0, 1), SESSION: SESSION_FIELDS, RECORD: (0, 1)}


class _Unsupported(Exception):
    """A layout this reader does not model: the SDK reads the file instead."""


class Broken(Exception):
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


class Definition:
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


def file_header(data: bytes, at: int) -> tuple[int, int] | None:
    """(header size, records size) of a FIT file header at `at`; None if there is none.
    The same test as the SDK's Decoder.is_fit."""
    if at >= len(data) or data[at] not in (12, 14) or len(data) < data[at] + 2:
        return None
    if len(data) < at + data[at] or data[at + 8:at + 12] != b".FIT":
        return None
    return data[at], int.from_bytes(data[at + 4:at + 8], "little")


def definition_end(data: bytes, p: int, header: int) -> int:
    """Where the definition message at p ends."""
    size = len(data)
    q = p + 6 + 3 * data[p + 5] if p + 6 <= size else size + 1
    if header & 0x20 and q < size:  # developer field definitions follow
        q += 1 + 3 * data[q]
    elif header & 0x20:
        q = size + 1
    if q > size:
        raise Broken(p, "ends inside a definition")
    return q


def definition(data: bytes, p: int, header: int) -> Definition:
    """The definition message at p."""
    endian = "<" if data[p + 2] == 0 else ">"
    number = int.from_bytes(data[p + 3:p + 5], "little" if endian == "<" else "big")
    q = p + 6 + 3 * data[p + 5]
    wanted = _WANTED.get(number, ())
    fields, offset = {}, 1  # offsets count from the data message's header byte
    for i in range(p + 6, q, 3):
        num, field_size, base = data[i], data[i + 1], data[i + 2] & 0x1F
        if base not in _BASE_TYPES:
            raise Broken(i, "invalid field base type")
        if num in wanted or num == TIMESTAMP:
            if num in fields:  # the SDK keeps the last valid one: not modelled here
                raise _Unsupported(f"field {num} twice in one definition")
            fields[num] = _Field(offset, field_size, base, endian)
        offset += field_size
    if header & 0x20:  # developer fields: only their sizes matter here
        offset += sum(data[q + 2:q + 1 + 3 * data[q]:3])
    return Definition(number, offset, fields, endian)

