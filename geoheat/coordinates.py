"""Coordinates as activity files write them: a plain decimal number, or no position.

GDAL's GPX driver reads the number a bad coordinate's text starts with; maybe_misread
says when to look at the text (BAD_COORDINATE) for one.
"""

import re
from pathlib import Path

import numpy as np

# A coordinate as GPX writes it (xsd:decimal, an exponent allowed): ASCII digits, one
# point, a sign. GDAL (strtod) and float() read '46,0500' as 46, '0x2E' as 46, '4_6.05'
# as 4 or 46.05, full-width digits as 0 or 46: none of them is a position.
_NUMBER = rb"[ \t\r\n]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*"
COORDINATE = re.compile(_NUMBER + rb"\Z")
# A lat or lon attribute whose value is not such a number; a file holding one is read
# the slow (strict) way. The scan costs ~6% of a read, so it is run only on a file GDAL
# gave a coordinate with at most two decimals (see maybe_misread).
BAD_COORDINATE = re.compile(
    rb"(?:lat|lon)\s*=\s*(?:\"(?!" + _NUMBER + rb"\")|'(?!" + _NUMBER + rb"'))")


def coordinate(text: str | bytes | None) -> float:
    """A coordinate's text as a float; NaN (dropped, and counted, as no position) for
    no text or text that is not a plain decimal number (see _NUMBER)."""
    if text is None:
        return float("nan")
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if not COORDINATE.match(raw):
        return float("nan")
    return float(raw)


def bad_coordinates_note(name: str | Path, count: int, example: str) -> str:
    """The note for a file with coordinates that are not numbers (report.warnings
    groups notes by their words before the parenthesis)."""
    return (f"{name}: coordinates that are not numbers ({example}); dropped "
            f"{count:,} track point{'' if count == 1 else 's'} as invalid")


def maybe_misread(segments: list[np.ndarray]) -> bool:
    """Whether GDAL may have read a coordinate that is no number: it reads the number
    the text starts with ('46,0500', '0x2E', '4_6.05', '４６' give 46, 0, 4, 0), which
    has few decimals, where a device writes 5 to 9. A coordinate with at most two is
    rare enough in real tracks (about 1 in 100,000) to check the text then; a bad text
    whose start has three decimals or more is within ~100 m of what it could mean."""
    with np.errstate(invalid="ignore"):  # NaN or inf (a text 'nan'): no position anyway
        for segment in segments:
            hundredths = segment * 100.0
            if (np.abs(hundredths - np.rint(hundredths)) < 1e-6).any():
                return True
    return False
