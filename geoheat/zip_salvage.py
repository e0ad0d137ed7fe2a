"""A zip whose central directory is missing (a download cut short): its members, found
from the local header that precedes each one."""

import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple


class _Salvaged(NamedTuple):
    """A member found by its local header in a zip with no central directory."""

    data_at: int  # where its compressed bytes start
    size: int  # compressed size (to the end of the file for the one cut short)
    method: int
    flags: int
    file_size: int  # uncompressed size its header gives (0 if in a data descriptor)


_SALVAGED: dict[Path, tuple[tuple, dict[str, list[_Salvaged]]]] = {}


def salvage_zip(path: Path) -> dict[str, list[_Salvaged]]:
    """The members of a zip whose central directory is missing (a download cut short),
    from the local headers that precede each member (each name's, in order: a zip may
    hold a name twice); the last may be cut short.

    A member whose sizes follow its data (a 'data descriptor') is found by inflating
    it to its end. Cached per zip and process, like open_zip.
    """
    st = path.stat()
    key = (os.getpid(), st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _SALVAGED.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    members: dict[str, list[_Salvaged]] = {}
    with open(path, "rb") as f:
        at = 0
        while True:
            f.seek(at)
            header = f.read(30)
            if len(header) < 30 or not header.startswith(b"PK\x03\x04"):
                break
            (flags, method, _, _, _, size, file_size, name_length,
             extra_length) = struct.unpack("<6x4H3I2H", header)
            name = f.read(name_length).decode("utf-8" if flags & 0x800 else "cp437", "replace")
            extra = f.read(extra_length)
            data_at = at + 30 + name_length + extra_length
            if size == 0xFFFFFFFF or file_size == 0xFFFFFFFF:  # zip64: sizes in the extra
                i = 0
                while i + 4 <= len(extra):
                    tag, length = struct.unpack_from("<2H", extra, i)
                    if tag == 1 and length >= 16:
                        file_size, size = struct.unpack_from("<2Q", extra, i + 4)
                    i += 4 + length
            if flags & 0x8:  # sizes after the data: inflate to find its end
                if method != zipfile.ZIP_DEFLATED:
                    break
                size = _deflated_length(f, data_at)
                f.seek(data_at + size)
                descriptor = f.read(24)
                skip = 4 if descriptor.startswith(b"PK\x07\x08") else 0
                file_size = 0
                next_at = data_at + size + skip + 12
                if descriptor[skip + 12: skip + 16] not in (b"PK\x03\x04", b"PK\x01\x02"):
                    next_at += 8  # a zip64 descriptor: 8-byte sizes
            else:
                next_at = data_at + size
            size = max(0, min(size, st.st_size - data_at))
            if not name.endswith("/"):
                members.setdefault(name, []).append(
                    _Salvaged(data_at, size, method, flags, file_size))
            if next_at <= at or next_at >= st.st_size:
                break
            at = next_at
    _SALVAGED[path] = (key, members)
    return members


def _deflated_length(f, data_at: int) -> int:
    """How many bytes of raw deflate start at data_at (to the end of the file if cut)."""
    f.seek(data_at)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    fed, pending = 0, b""
    while not inflater.eof:
        if not pending:
            pending = f.read(1 << 20)
            if not pending:
                return fed
            fed += len(pending)
        inflater.decompress(pending, 1 << 20)  # output dropped: only its end is wanted
        pending = inflater.unconsumed_tail
    return fed - len(inflater.unused_data)  # at the end, the rest is unused_data
