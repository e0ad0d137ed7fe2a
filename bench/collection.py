"""A city-sized collection for the bench scripts, made from real GPX tracks.

The real runs in ../shared/data (chengdu-runs: ~500,000 points in one town) are copied
side by side into `places` places a few kilometres apart (a club pooling its members'
exports over one city), each copy a year earlier (never in the future, which the
build takes for an unset clock), so no copy is a duplicate of another.
`make_collection(folder, copies=4)` gives about 2 M points in 4 places in a row, each
a copy of the town (~3 km apart: a ~12 x 6 km area); `places` below `copies` stacks
copies on the same places. `spread=True` deals the activities out one by one over the
places instead (a grid SPREAD_ACROSS wide): with `copies=4, places=48` the same 2 M
points light about as many street-zoom tiles as a city's rider does (a 456-ride NYC
export: 1,253 tiles at zoom 16), not one town's hundred. `--data gpx` (the samples) gives a tiny one for the smoke
tests. Written as plain GPX
1.1 with times, made once per folder and reused.
"""

from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import geoheat
from geoheat.samples import gpx_document

ROOT = Path(__file__).resolve().parents[1]
SHARED_RUNS = ROOT.parent / "shared" / "data" / "chengdu-runs"
# Degrees between neighbouring places (about 3 km east, 2 km north at 30 degrees north).
STEP_LON, STEP_LAT = 0.03, 0.02
PLACES_ACROSS = 4
SPREAD_ACROSS = 12  # spread: the places' grid is wider (a city, not a row of towns)


class Collection(NamedTuple):
    """What a collection holds: its folder, GPX files, points and a line naming it."""

    folder: Path
    files: int
    points: int
    description: str


def make_collection(folder: Path, data: Path = SHARED_RUNS, copies: int = 4,
                    places: int | None = None, spread: bool = False) -> Collection:
    """Write `copies` shifted copies of the GPX tracks in `data` into folder.

    places: how many places the copies take turns in (None: a place each; 1: all stacked
    on the original town); spread: each activity takes the next place in turn (None
    places: one place per copy). A folder made before with the same settings is reused."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / ".collection"
    settings = f"{data.resolve()} {copies} {places}{' spread' if spread else ''}"
    if stamp.is_file():
        kept_settings, points, files = stamp.read_text().rsplit(" ", 2)
        if kept_settings == settings:
            return Collection(folder, int(files), int(points),
                              describe(data, copies, places, int(points), int(files),
                                       spread))
    for old in folder.glob("*.gpx"):
        old.unlink()
    points = files = 0
    sources = sorted(data.rglob("*.gpx"))
    for copy in range(copies):
        for n, path in enumerate(sources):
            if spread:
                place = (copy * len(sources) + n) % (places or copies)
            else:
                place = copy % places if places else copy
            across = SPREAD_ACROSS if spread else PLACES_ACROSS
            dx = STEP_LON * (place % across)
            dy = STEP_LAT * (place // across)
            activity = geoheat.read_gpx(path)
            if not activity.segments or activity.times is None or activity.start is None:
                continue
            shifted = [s + [dx, dy] for s in activity.segments]
            when = [[activity.start.fromtimestamp(t, activity.start.tzinfo)
                     - timedelta(days=365 * copy) for t in times] for times in activity.times]
            out = folder / f"{copy:03d}-{path.name}"
            out.write_text(gpx_document(shifted, activity_type=activity.sport, times=when))
            points += sum(len(s) for s in shifted)
            files += 1
    stamp.write_text(f"{settings} {points} {files}")
    return Collection(folder, files, points,
                      describe(data, copies, places, points, files, spread))


def describe(data: Path, copies: int, places: int | None, points: int, files: int,
             spread: bool = False) -> str:
    """One line naming the data a bench figure came from."""
    where = (f"{places} places" if places else f"{copies} places") if copies > 1 else "1 place"
    if spread:
        where = f"{places or copies} places, the activities dealt out one by one"
    return (f"{points:,} points in {files} GPX files: {copies} cop{'y' if copies == 1 else 'ies'} "
            f"of {data.name} over {where} ({STEP_LON} x {STEP_LAT} degrees apart, "
            f"{SPREAD_ACROSS if spread else PLACES_ACROSS} across)")
