"""What a user asks privacy to hide, checked: zones (LAT,LON[,RADIUS_M] text, tuples, a
file of them) and the metres hidden at each end of every activity."""

import math
from pathlib import Path
from typing import NamedTuple

from .errors import ParameterError

MAX_LATITUDE = 85.0511287798066
DEFAULT_RADIUS = 200.0  # metres
MAX_RADIUS = 5000.0  # a zone hides a neighbourhood, not a town


class Zone(NamedTuple):
    """A circle where nothing is drawn: its centre (degrees) and radius (ground metres)."""

    lat: float
    lon: float
    radius: float = DEFAULT_RADIUS


def parse_zone(text: str, where: str = "privacy zone") -> Zone:
    """'LAT,LON' or 'LAT,LON,RADIUS_M' as a Zone; ParameterError naming `where`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise ParameterError(f"{where}: expected LAT,LON or LAT,LON,RADIUS_M (degrees and "
                             f"metres), got {text!r}") from None
    return check_zone(Zone(*values), where)


def check_zone(zone, where: str = "privacy zone") -> Zone:
    """A Zone (from a Zone or a (lat, lon[, radius]) sequence) with its values checked."""
    if isinstance(zone, str):
        return parse_zone(zone, where)
    try:
        zone = Zone(*(float(v) for v in zone))
    except (TypeError, ValueError):
        raise ParameterError(f"{where}: expected (LAT, LON[, RADIUS_M]), got {zone!r}") from None
    if not all(math.isfinite(v) for v in zone):
        raise ParameterError(f"{where}: not a number in {zone_text(zone)}")
    if not -MAX_LATITUDE < zone.lat < MAX_LATITUDE or not -180 <= zone.lon <= 180:
        raise ParameterError(f"{where}: latitude must be within +-{MAX_LATITUDE:.2f} and "
                             f"longitude within +-180, got {zone.lat:g},{zone.lon:g}")
    if not 0 < zone.radius <= MAX_RADIUS:
        raise ParameterError(f"{where}: radius must be 1-{MAX_RADIUS:g} metres, "
                             f"got {zone.radius:g}")
    return zone


def zone_text(zone: Zone) -> str:
    return ",".join(f"{v:g}" for v in zone)


def read_zone_file(path: Path) -> tuple[Zone, ...]:
    """The zones of a text file, one LAT,LON[,RADIUS_M] a line ('#' starts a comment)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ParameterError(f"{path}: cannot read the privacy file: {why}") from None
    zones = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            zones.append(parse_zone(line, f"{path} line {number}"))
    if not zones:
        raise ParameterError(f"{path}: no zone in the privacy file (one LAT,LON[,RADIUS_M] "
                             "a line)")
    return tuple(zones)


def check_hide_ends(metres) -> float:
    if isinstance(metres, bool) or not isinstance(metres, (int, float)) \
            or not 0 <= metres <= 50_000:
        raise ParameterError(f"hide ends must be 0-50000 metres, got {metres!r}")
    return float(metres)
