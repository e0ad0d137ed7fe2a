"""A source's bytes: zip members encrypted or of unreadable methods, one open zip per
file, and compressed bombs and huge files refused at the limit with bounded memory."""

import gzip
import struct
import tracemalloc
import zipfile

from geoheat.reading import parse_file
from geoheat.samples import gpx_document
from geoheat.source_bytes import MAX_ACTIVITY_BYTES, Source, open_zip, read_source
from geoheat.sources import find_sources

from .test_sources import GPX, TRACK


def set_zip_flags(path, member, flag_bits=0x1, method=None):
    """Mark one member encrypted (and give it another method), as a real encrypted zip
    says it: in its local header and its central directory entry."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    local = info.header_offset
    central = 0
    while True:
        central = data.index(b"PK\x01\x02", central)
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + name_length].decode() == member:
            break
        central += 4
    for at, flag_at, method_at in ((local, 6, 8), (central, 8, 10)):
        flags = struct.unpack_from("<H", data, at + flag_at)[0]
        struct.pack_into("<H", data, at + flag_at, flags | flag_bits)
        if method is not None:
            struct.pack_into("<H", data, at + method_at, method)
    path.write_bytes(bytes(data))


def test_encrypted_and_aes_members_are_skipped_with_a_reason(tmp_path):
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("a.gpx", "secret.gpx", "aes.gpx", "deflate64.gpx"):
            archive.writestr(name, GPX)
    set_zip_flags(path, "secret.gpx")
    set_zip_flags(path, "aes.gpx", method=99)
    set_zip_flags(path, "deflate64.gpx", flag_bits=0, method=9)
    parsed = {s.member: parse_file(s) for s in find_sources([path])}
    assert parsed["a.gpx"].error is None and parsed["a.gpx"].points == len(TRACK)
    assert "encrypted" in parsed["secret.gpx"].error
    assert "encrypted" in parsed["aes.gpx"].error
    assert "Deflate64" in parsed["deflate64.gpx"].error
    assert all(p.error is None or p.error.startswith(f"{path}:") for p in parsed.values())


def test_a_zip_of_thousands_of_members_is_opened_once(tmp_path):
    path = tmp_path / "many.zip"
    tiny = gpx_document([TRACK[:2]]).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(5000):
            archive.writestr(f"activities/{i:05d}.gpx", tiny)
    sources = find_sources([path])
    assert len(sources) == 5000
    # Reopened per member this is 5,000 x 5,000 directory entries: minutes, not seconds.
    assert all(read_source(s) == tiny for s in sources)
    assert open_zip(path) is open_zip(path)
    assert parse_file(sources[-1]).points == 2


def gzip_bomb(size):
    """A GPX head followed by `size` bytes of blanks, gzipped (a few KB per MB)."""
    chunks = [GPX[:200]] + [b" " * (1 << 20)] * (size >> 20)  # a real head: it looks right
    return gzip.compress(b"".join(chunks), compresslevel=9)


def test_compressed_bombs_are_refused_at_the_limit_with_bounded_memory(tmp_path):
    limit = 4 * 1024**2
    bomb = gzip_bomb(64 * 1024**2)
    assert len(bomb) < limit // 8
    (tmp_path / "bomb.gpx.gz").write_bytes(bomb)
    (tmp_path / "bomb-named.gpx").write_bytes(bomb)  # gzip by its bytes, not its name
    with zipfile.ZipFile(tmp_path / "bombs.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.gpx", gzip.decompress(bomb))
        archive.writestr("inner.gpx.gz", bomb)
    sources = [Source(tmp_path / "bomb.gpx.gz"), Source(tmp_path / "bomb-named.gpx"),
               Source(tmp_path / "bombs.zip", "big.gpx"),
               Source(tmp_path / "bombs.zip", "inner.gpx.gz")]
    for source in sources:
        tracemalloc.start()
        parsed = parse_file(source, max_bytes=limit)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert parsed.error == (f"{source.name}: larger than 4 MiB uncompressed "
                                "(--max-file-size raises the limit)")
        assert peak < 4 * limit, (source.name, peak)


def test_plain_files_over_the_limit_are_refused_by_their_size(tmp_path):
    sparse = tmp_path / "huge.gpx"
    with open(sparse, "wb") as f:
        f.truncate(30 * 1024**3)  # 30 GB, sparse: reading it would take minutes
    parsed = parse_file(sparse)  # refused from its size: reading it would take minutes
    assert parsed.error == f"{sparse}: larger than 512 MiB (--max-file-size raises the limit)"
    assert MAX_ACTIVITY_BYTES == 512 * 1024**2
    small = tmp_path / "small.gpx"
    small.write_bytes(GPX)
    assert "larger than" in parse_file(small, max_bytes=len(GPX) - 1).error
    assert parse_file(small, max_bytes=len(GPX)).error is None


def test_a_truncated_gzip_keeps_what_it_held(tmp_path):
    data = gzip.compress(gpx_document([TRACK] * 40).encode())
    (tmp_path / "cut.gpx.gz").write_bytes(data[: len(data) // 2])
    parsed = parse_file(tmp_path / "cut.gpx.gz")
    assert parsed.error is None and 0 < parsed.points < 40 * len(TRACK)
    assert "broken off" in parsed.note
