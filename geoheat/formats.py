"""FIT and TCX activities, and the one vocabulary of sport types geoheat filters on.

FIT through geoheat.fit (a fast reader; Garmin's FIT SDK is its fallback); TCX through
a streaming XML parse. Both keep what was read before a break in a truncated file and say so.
"""

import io
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import numpy as np

from .coordinates import bad_coordinates_note, coordinate
from .errors import GPXError
from .gpx import Activity, xml_bytes
from .times import parse_time, plausible_start, posix_times

SEMICIRCLE = 180.0 / 2**31  # degrees per FIT semicircle

# Strava's activity types (its API's ActivityType), and what other sources call them.
# Keys are matched lower-case with spaces, dashes and underscores removed. A sport
# named but none of these is OTHER; an activity whose sources name no sport is UNTYPED.
TYPES = ("Ride", "Run", "Walk", "Hike", "Swim", "VirtualRide", "VirtualRun", "EBikeRide",
         "Velomobile", "Handcycle", "Wheelchair", "Rowing", "Kayaking", "Canoeing",
         "StandUpPaddling", "Surfing", "Kitesurf", "Windsurf", "Sail", "NordicSki",
         "AlpineSki", "BackcountrySki", "RollerSki", "Snowboard", "Snowshoe", "IceSkate",
         "InlineSkate", "Skateboard", "RockClimbing", "Golf", "Soccer", "Workout",
         "WeightTraining", "Crossfit", "Elliptical", "StairStepper", "Yoga", "Other")
OTHER = "Other"
UNTYPED = "untyped"  # no sport named anywhere: what reports say, and what --type selects
# Drawn only when asked for by name: their tracks lie in made-up worlds (Zwift's Watopia
# in the Pacific) or replay a route indoors. Strava keeps them off its heatmap too.
VIRTUAL_TYPES = ("VirtualRide", "VirtualRun")
# A type that says more than another about one activity (merged duplicates keep it).
_REFINES = {"VirtualRide": "Ride", "VirtualRun": "Run", "EBikeRide": "Ride"}
# Strava's numeric codes in its GPX exports' <type> (its internal activity type ids).
_GPX_CODES = {
    "1": "Ride", "2": "AlpineSki", "3": "BackcountrySki", "4": "Hike", "5": "IceSkate",
    "6": "InlineSkate", "7": "NordicSki", "8": "RollerSki", "9": "Run", "10": "Walk",
    "11": "Workout", "12": "Snowboard", "13": "Snowshoe", "14": "Kitesurf", "15": "Windsurf",
    "16": "Swim", "17": "VirtualRide", "18": "EBikeRide", "20": "Canoeing", "21": "Kayaking",
    "22": "Rowing", "23": "StandUpPaddling", "24": "Surfing", "25": "Crossfit",
    "26": "Elliptical", "27": "RockClimbing", "28": "StairStepper", "29": "WeightTraining",
    "30": "Yoga",
}
_ALIASES = {
    **_GPX_CODES,
    # common words; FIT's sport names (its profile's); Strava's newer sport types
    "cycling": "Ride", "biking": "Ride", "bike": "Ride", "roadbiking": "Ride",
    "mountainbiking": "Ride", "gravelcycling": "Ride", "mountainbikeride": "Ride",
    "gravelride": "Ride", "running": "Run", "trailrunning": "Run", "trailrun": "Run",
    "walking": "Walk", "hiking": "Hike", "mountaineering": "Hike", "swimming": "Swim",
    "ebiking": "EBikeRide", "emountainbikeride": "EBikeRide", "rowing": "Rowing",
    "paddling": "Kayaking", "kayaking": "Kayaking", "rafting": "Kayaking",
    "standuppaddleboarding": "StandUpPaddling", "kitesurfing": "Kitesurf",
    "windsurfing": "Windsurf", "sailing": "Sail", "crosscountryskiing": "NordicSki",
    "alpineskiing": "AlpineSki", "snowboarding": "Snowboard", "snowshoeing": "Snowshoe",
    "iceskating": "IceSkate", "inlineskating": "InlineSkate", "rockclimbing": "RockClimbing",
    "wheelchairpushwalk": "Wheelchair", "wheelchairpushrun": "Wheelchair",
    "training": "Workout", "fitnessequipment": "Workout", "hiit": "Workout",
    "highintensityintervaltraining": "Workout",
}
_CANONICAL = {strava.lower(): strava for strava in TYPES}


def _key(name) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def activity_type(name: str | None) -> str | None:
    """A sport name from any source (GPX, FIT, TCX, Strava's CSV) as a Strava type:
    OTHER for a sport Strava has no type for, None for no name at all."""
    if not name or not str(name).strip():
        return None
    key = _key(name)
    return _CANONICAL.get(key) or _ALIASES.get(key, OTHER)


def type_filter(name: str) -> str:
    """A --type name as the type it selects (TYPES, any name activity_type knows, or
    UNTYPED); ValueError naming the known ones for any other."""
    if _key(name) == UNTYPED:
        return UNTYPED
    kind = activity_type(name)
    if kind is None or (kind == OTHER and _key(name) != OTHER.lower()):
        raise ValueError(f"unknown activity type {name!r}: the types are "
                         f"{', '.join(TYPES)} and {UNTYPED} (no type named)")
    return kind


def specificity(kind: str | None) -> int:
    """How much a type says: none < OTHER < a type < one refining another (VirtualRide
    says more than Ride about one ride)."""
    if kind is None:
        return 0
    if kind == OTHER:
        return 1
    return 3 if kind in _REFINES else 2


def read_fit(data: bytes, name: str) -> tuple[Activity, str | None]:
    """A FIT file's positions as one segment; and a note if it broke off early."""
    from . import fit  # the fast reader, with Garmin's SDK as its fallback

    return fit.read_fit(data, name)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _coordinate(text: str | None) -> tuple[float, str | None]:
    """A coordinate's text as a float, NaN (dropped and counted) if it is no number
    ('46,05', '４６': coordinates.coordinate); and that text, if it is there but no number."""
    value = coordinate(text)
    if value == value or not text or not text.strip():
        return value, None
    return value, text.strip()[:20]


def read_tcx(data: bytes, name: str) -> tuple[Activity, str | None]:
    """A TCX file's tracks (one segment per <Track>), streamed; and a note if it broke off.

    The start is the first trackpoint's time (else the activity's <Id>); each point's
    <Time> is kept in Activity.times.
    """
    segments, times, current, stamps = [], [], [], []
    sport = identity = None
    note = None
    lat = lon = when = None
    bad_points, example, point_bad = 0, None, None  # coordinates that are not numbers

    def close_track():
        if current:
            segments.append(np.array(current, dtype=np.float64))
            flat = np.full(len(stamps), np.nan)
            timed = [i for i, t in enumerate(stamps) if t]
            if timed:
                flat[timed] = posix_times([stamps[i] for i in timed])
            times.append(flat)
        current.clear()
        stamps.clear()

    try:
        for event, element in ET.iterparse(io.BytesIO(xml_bytes(data)), events=("start", "end")):
            tag = _local(element.tag)
            if event == "start":
                if tag == "Activity" and sport is None:
                    sport = element.get("Sport")
                elif tag == "Track":
                    close_track()
                elif tag == "Trackpoint":
                    lat = lon = when = point_bad = None
                continue
            if tag == "Id" and identity is None:
                identity = parse_time(element.text or "")
            elif tag == "LatitudeDegrees":
                lat, bad = _coordinate(element.text)
                point_bad = point_bad or bad
            elif tag == "LongitudeDegrees":
                lon, bad = _coordinate(element.text)
                point_bad = point_bad or bad
            elif tag == "Time":
                when = (element.text or "").strip().encode() or None
            elif tag == "Trackpoint":
                if point_bad:
                    bad_points += 1
                    example = example or point_bad
                if lat is not None and lon is not None:
                    current.append((lon, lat))
                    stamps.append(when)
                lat = lon = when = None
                element.clear()
            elif tag == "Track":
                close_track()
    except ET.ParseError as err:
        close_track()
        points = sum(len(s) for s in segments)
        if not points:
            raise GPXError(f"{name}: broken or truncated XML ({err})") from None
        note = f"{name}: broken off ({err}); kept the {points:,} positions before it"
    except RecursionError:
        raise GPXError(f"{name}: nested too deeply to be a TCX file") from None
    close_track()
    if times and all(np.isnan(t).all() for t in times):
        times = []
    first = next((t[np.isfinite(t)][0] for t in times if np.isfinite(t).any()), None)
    start = datetime.fromtimestamp(float(first), timezone.utc) if first is not None else identity
    start, time_note = plausible_start(start)
    if bad_points:
        more = bad_coordinates_note(name, bad_points, f"'{example}'")
        note = f"{note}; {more.removeprefix(f'{name}: ')}" if note else more
    return Activity(name, segments, start, 0, 0, sport, times or None, time_note), note
