"""Times in activity files: ISO 8601 text as datetimes and POSIX seconds, and whether
a start is plausible (not an unset clock)."""

from datetime import datetime, timedelta, timezone

import numpy as np

# Before 1980 (GPS time begins 1980-01-06) is a clock never set (1970) or a converter's
# placeholder; more than a day ahead of now, a wrong clock.
EARLIEST_START = datetime(1980, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=1)
# FIT times below 0x10000000 s after the FIT epoch (1989-12-31) count from the device's
# power-on, not the calendar (the FIT protocol's rule): no date before 1998-07-05.
FIT_EARLIEST = datetime(1989, 12, 31, tzinfo=timezone.utc) + timedelta(seconds=0x10000000)


def parse_time(text: bytes | str) -> datetime | None:
    """An ISO 8601 GPX time as a datetime, or None if it is not one. RFC 3339's
    lower-case 't' and 'z' ('2024-05-01t10:00:00z') and a space for the 't' are times."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return datetime.fromisoformat(text.strip().upper())
    except ValueError:
        return None


def plausible_start(start: datetime | None, now: datetime | None = None,
                    earliest: datetime = EARLIEST_START) -> tuple[datetime | None, str | None]:
    """(start, None) if start can be an activity's start, else (None, why not).

    Before 1980 or more than a day ahead is an unset clock, not a time. A time with
    no zone is UTC (as GPX says), so it compares with others whatever the local zone.
    """
    if start is None:
        return None, None
    aware = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    if earliest <= aware <= now + FUTURE_SLACK:
        return aware, None
    return None, f"time {start.date().isoformat()} is implausible (an unset clock?)"


def posix_times(texts: list[bytes]) -> np.ndarray:
    """ISO 8601 times as float64 POSIX seconds (NaN where one is no time); a time with
    no zone is taken as UTC."""
    n = len(texts)
    if n == 0:
        return np.empty(0)
    first = texts[0]
    width = len(first)
    # The common case in numpy: every time 'YYYY-MM-DDTHH:MM:SS[.fff]Z', computed from
    # its digits. Not numpy's own string parsing: casting a large array holding one
    # malformed string to datetime64 crashes the process (numpy 2.4, found by fuzzing).
    if 20 <= width <= 40 and first[-1:] in b"Zz" and first[10:11] in (b"T", b"t", b" "):
        raw = np.array(texts, dtype=f"S{width}")
        if raw.dtype.itemsize == width:
            fast = _utc_layout_times(raw.view(np.uint8).reshape(n, width))
            if fast is not None:
                return fast
    out = np.full(n, np.nan)
    for i, text in enumerate(texts):
        when = parse_time(text)
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            try:
                out[i] = when.timestamp()
            except (OverflowError, OSError, ValueError):
                pass
    return out


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _utc_layout_times(chars: np.ndarray) -> np.ndarray | None:
    """Rows of 'YYYY-MM-DDTHH:MM:SS[.fff]Z' bytes as POSIX seconds, NaN for a row that is
    no valid time; None unless every row has that layout's punctuation."""
    width = chars.shape[1]
    punctuation = {4: b"-", 7: b"-", 10: b"Tt ", 13: b":", 16: b":", width - 1: b"Zz"}
    if width > 20:
        punctuation[19] = b"."
    for at, allowed in punctuation.items():
        column = chars[:, at]
        if not np.logical_or.reduce([column == c for c in allowed]).all():
            return None
    digit_columns = [i for i in range(width - 1) if i not in punctuation]
    digits = chars[:, digit_columns].astype(np.int64) - ord("0")
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)

    def number(columns):
        value = np.zeros(len(chars), dtype=np.int64)
        for column in columns:
            value = value * 10 + digits[:, digit_columns.index(column)]
        return value

    year, month, day = number([0, 1, 2, 3]), number([5, 6]), number([8, 9])
    hour, minute, second = number([11, 12]), number([14, 15]), number([17, 18])
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    last_day = _DAYS_IN_MONTH[np.where(month_ok, month, 1)] + (leap & (month == 2))
    ok &= month_ok & (day >= 1) & (day <= last_day) & (hour < 24) & (minute < 60) & (second <= 60)
    # Days since 1970-01-01 from the civil date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    seconds = (days * 86400 + hour * 3600 + minute * 60 + second).astype(np.float64)
    if width > 21:
        fraction = number(list(range(20, width - 1)))
        seconds += fraction / 10.0 ** (width - 21)
    seconds[~ok] = np.nan
    return seconds
