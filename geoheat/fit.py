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
draws nothing out of step from a damaged file (fitdamage.off_track), reads an unfinished
file (no data size in its header) to its last message, and types an activity by
all its sessions (activity_sport). Beyond the SDK it
reads compressed-timestamp headers (the SDK stops at them). A layout it does not
model (a position field that is not a 4-byte sint32, say) makes it hand the whole
file to the SDK (read_fit_sdk), which is also the reference the tests compare with.

The work is shared: fitformat (headers, definitions), fitscan (the walk over the
messages), fitdamage (CRC, positions out of step); this module makes the activity.
"""

from datetime import datetime, timezone

import numpy as np

from .errors import GPXError
from .fitdamage import TIME_SPAN_DAYS, crc_mismatch, off_track
from .fitformat import FIT_EPOCH, INVALID_SINT32, INVALID_UINT32, SEMICIRCLE, file_header
from .fitscan import scan_messages
from .gpx import Activity


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


def read_fit(data: bytes, name: str) -> tuple[Activity, str | None]:
    """A FIT file's positions as one segment; and a note if it broke off early (or was
    damaged: then positions out of step with the track are left out)."""
    if file_header(data, 0) is None:
        raise GPXError(f"{name}: not a FIT file")
    try:
        scan = scan_messages(data)
    except Exception:  # a layout not modelled here (fitformat), or not foreseen
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
        off = off_track(lat[valid], lon[valid], stamps[valid], created)
        if off.any() and (scan.problem or scan.unfinished
                          or crc_mismatch(data, scan.files)):
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
    off = off_track(np.round(lonlat[:, 1] / SEMICIRCLE).astype(np.int64),
                    np.round(lonlat[:, 0] / SEMICIRCLE).astype(np.int64), stamps)
    header_size, records_size = file_header(data, 0)
    if not off.any() or not (note or crc_mismatch(data, [(0, header_size + records_size)])):
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
