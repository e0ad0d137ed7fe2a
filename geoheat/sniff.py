"""What a file is, from its first bytes: GPX, FIT or TCX, or what else it is.

What a file is comes from its bytes, not its name: people rename, gunzip and convert
files, and browsers gunzip downloads without renaming them.
"""

import re

from .gpx import xml_bytes

SNIFF_BYTES = 4096  # enough to see past a BOM, an XML declaration and comments
GZIP_MAGIC = b"\x1f\x8b"

_ROOT = re.compile(rb"(?:<\?.*?\?>|<!--.*?-->|(?i:<!DOCTYPE)[^>]*>|\s)*<([\w.:-]+)", re.S)


def xml_root(head: bytes) -> str | None:
    """The local name of the first element of XML bytes (after BOM, blanks, declaration,
    comments), or None if they do not start like XML."""
    match = _ROOT.match(xml_bytes(head[:SNIFF_BYTES], strict=False))
    return match.group(1).decode("ascii", "replace").rsplit(":", 1)[-1] if match else None


def sniff_format(head: bytes) -> str | None:
    """'gpx', 'fit' or 'tcx' from a file's first bytes (uncompressed), else None."""
    if len(head) >= 12 and head[8:12] == b".FIT":
        return "fit"
    root = xml_root(head)
    if root is None:
        return None
    if root.lower() == "gpx":
        return "gpx"
    if root == "TrainingCenterDatabase":
        return "tcx"
    return None


_MAGIC = [(b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"),
          (b"PK\x05\x06", "an empty zip archive"), (GZIP_MAGIC, "gzip data"),
          (b"BZh", "bzip2 data"), (b"\xfd7zXZ", "xz data"), (b"7z\xbc\xaf", "a 7-Zip archive"),
          (b"Rar!", "a RAR archive"), (b"SQLite format 3", "an SQLite database"),
          (b"\x00\x00\x00\x18ftyp", "an MP4 video"), (b"\x00\x00\x00\x20ftyp", "an MP4 video")]


def describe_content(head: bytes) -> str | None:
    """What bytes that sniff_format does not know are, for a message ('a PNG image',
    'an HTML page', 'an XML file whose root is <kml>')."""
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    root = xml_root(head)
    if root is not None:
        if root.lower() == "html":
            return "an HTML page"
        if root.lower() == "kml":
            return "a KML file (geoheat reads GPX, FIT and TCX)"
        return f"an XML file whose root is <{root}>"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "JSON"
    if b"\x00" in head[:512]:
        return "binary data of an unknown kind"
    return "text, not GPX, FIT or TCX"
