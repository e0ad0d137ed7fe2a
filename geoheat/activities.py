"""Parsed files to the activities a build draws: filtered by year and type, each once.

Works on the files' summaries (their points may still be in the parse cache); what
happened to every file is recorded in a BuildResult.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from .cache import ParsedFile
from .formats import UNTYPED, VIRTUAL_TYPES, specificity, type_filter
from .report import BuildResult, FileEntry
from .summary import Summary
from .tiles import EARTH_RADIUS, TILE_SIZE, world_pixels

# Why an activity of a virtual type is not drawn unless asked for (formats.VIRTUAL_TYPES)
VIRTUAL_LEFT_OUT = "virtual: --type VirtualRide,VirtualRun draws them"

# Two activities are one activity twice (a .gpx and a .fit of one ride, or two exports
# unpacked into one folder) if their parsed tracks and their files' own starts are
# identical (the same file twice, whatever dates an index gives them; a copy without
# times is the timed one), or if they start within a minute of each other
# AND their tracks agree: first and last points within 200 m, lengths within 10%. A
# start time alone is not enough: converters write their own run time into every file.
# An activity from an export has two starts, the index's and its file's (they differ
# by a minute or more in real exports): either may match.
DUPLICATE_SECONDS = 60
DUPLICATE_METRES = 200
DUPLICATE_LENGTH_RATIO = 0.10
# Candidates are found by start minute, then by the zoom-14 tile of the first point
# (~2.4 km, over 200 m on the ground at any latitude Web Mercator draws), so only
# activities near in time and place are compared; this many rows at a time.
_PLACE_ZOOM = 14
_ROWS = 256


def select_activities(
    parsed: Sequence[ParsedFile],
    years: Iterable[int] | None = None,
    types: Iterable[str] | None = None,
    keep_duplicates: bool = False,
) -> tuple[list[ParsedFile], BuildResult]:
    """Keep the activities of `years` and `types` (all but the virtual ones if None;
    formats.UNTYPED selects those without a type), each once (unless keep_duplicates);
    count the rest, file by file, in a BuildResult. The kept ones are recorded as drawn
    by `record_drawn`, once the extent is known."""
    result = BuildResult(files=len(parsed))
    years = set(years) if years else None
    types = {type_filter(t) for t in types} if types else None
    readable = []
    for activity in parsed:
        result.routes += activity.routes
        result.waypoints += activity.waypoints
        if activity.error:
            result.skipped.append((activity.name, activity.error))
            result.entries.append(FileEntry.of(activity, "skipped", _reason(activity)))
            continue
        if activity.note:
            result.notes.append(activity.note)
        if activity.time_note:
            result.time_notes.append((activity.name, activity.time_note))
        result.files_read += 1
        result.points_read += activity.points + activity.invalid
        result.points_invalid += activity.invalid
        readable.append(activity)
    # Duplicates first: a copy's type (an export's VirtualRide) is the activity's.
    if keep_duplicates:
        unique, repeats = readable, []
    else:
        unique, repeats = drop_duplicates(readable)
    left_out = {id(a): _left_out(a, years, types) for a in unique}
    kept = []
    for activity in unique:
        why = left_out[id(activity)]
        if why:
            result.left_out[why] += 1
            result.points_left_out += activity.points
            result.entries.append(FileEntry.of(activity, "left_out", why))
        else:
            kept.append(activity)
    for repeat, first in repeats:
        result.duplicates += 1
        result.points_left_out += repeat.points
        result.entries.append(FileEntry.of(repeat, "duplicate",
                                           f"the same activity as {first.name}"))
    return kept, result


def record_drawn(result: BuildResult, kept: Sequence[ParsedFile], inside: np.ndarray) -> None:
    """Count the kept activities as drawn, by type and format, or as left out where none
    of their points is inside the extent (inside: one flag per activity)."""
    for activity, drawn in zip(kept, inside):
        if not drawn:
            result.left_out["outside the extent"] += 1
            result.entries.append(FileEntry.of(activity, "left_out", "outside the extent"))
            continue
        result.types[activity.activity_type or UNTYPED] += 1
        result.formats[activity.format] += 1
        result.entries.append(FileEntry.of(activity, "drawn"))


def _reason(activity: ParsedFile) -> str:
    """A skipped file's reason without its name ('NAME: reason' -> 'reason')."""
    prefix = f"{activity.name}: "
    return activity.error[len(prefix):] if activity.error.startswith(prefix) else activity.error


def _left_out(activity: ParsedFile, years, types) -> str | None:
    if not activity.points:
        return "no valid positions"
    if years is not None:
        if activity.start is None:
            return "no time, so no year"
        if activity.start.year not in years:
            return "other years"
    kind = activity.activity_type or UNTYPED
    if types is None and kind in VIRTUAL_TYPES:
        return VIRTUAL_LEFT_OUT
    if types is not None and kind not in types:
        return "untyped" if kind == UNTYPED else "other types"
    return None


def _ground_distance(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.hypot(*(a - b)) / np.cosh((a[1] + b[1]) / 2 / EARTH_RADIUS))


def same_track(first: Summary, second: Summary) -> bool:
    """Whether two activities' tracks agree: ends within DUPLICATE_METRES, lengths
    within DUPLICATE_LENGTH_RATIO (or DUPLICATE_METRES)."""
    if _ground_distance(first.first, second.first) > DUPLICATE_METRES:
        return False
    if _ground_distance(first.last, second.last) > DUPLICATE_METRES:
        return False
    a, b = first.length, second.length
    return abs(a - b) <= max(DUPLICATE_LENGTH_RATIO * max(a, b), DUPLICATE_METRES)


def drop_duplicates(activities: Sequence[ParsedFile]):
    """The activities without repeats of one (see DUPLICATE_*), and the repeats dropped as
    (repeat, the activity kept instead). Of a group of copies, the one with the most
    points stays (the first listed of equals), with the most specific type any copy has
    (an export's VirtualRide over its file's Ride).

    Near-linear: copies are found by a digest of the parsed track, and by start minute
    and place; only the few activities sharing those are compared.
    """
    group = list(range(len(activities)))  # union-find: each activity's group

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    def join(i, j):
        i, j = root(i), root(j)
        if i != j:
            group[max(i, j)] = min(i, j)

    # The same track from the same start by the file's own clock (an index may date
    # its copies apart): one activity. A copy without times is one with any.
    first_with: dict[tuple, int] = {}  # (digest, own start) -> the first such activity
    untimed = []
    for i, activity in enumerate(activities):
        if activity.summary is None:
            continue
        digest = track_digest(activity.summary)
        own = activity.own_start or activity.start
        if own is None:
            untimed.append((i, digest))
        else:
            join(i, first_with.setdefault((digest, own), i))
            first_with.setdefault((digest, None), i)
    for i, digest in untimed:
        join(i, first_with.setdefault((digest, None), i))
    for i, j in _near_pairs(activities):
        join(i, j)
    members = defaultdict(list)
    for i in range(len(activities)):
        members[root(i)].append(i)
    chosen = {}  # group -> (the activity it keeps, that activity with the group's type)
    for top, copies in members.items():
        if len(copies) > 1:
            best = max(copies, key=lambda i: (activities[i].points, -i))
            kind = max((activities[i].activity_type for i in copies), key=specificity)
            winner = activities[best]
            if specificity(kind) > specificity(winner.activity_type):
                winner = winner._replace(activity_type=kind)
            chosen[top] = best, winner
    kept, repeats = [], []
    for i, activity in enumerate(activities):
        best, winner = chosen.get(root(i), (i, activity))
        if i == best:
            kept.append(winner)
        else:
            repeats.append((activity, winner))
    return kept, repeats


def track_digest(summary: Summary) -> bytes:
    """A digest of a parsed track: equal for the same points (the summary is made from
    them, bit for bit: counts, ends, length, the cells and their bounds)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((summary.points, summary.first, summary.last, summary.length)).encode())
    for part in (summary.cells, summary.cell_points, summary.cell_bounds):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.digest()


def _near_pairs(activities: Sequence[ParsedFile]) -> Iterable[tuple[int, int]]:
    """Pairs (i, j) of activities that start within DUPLICATE_SECONDS (either start:
    start or own_start) and whose tracks agree (same_track)."""
    who, when = [], []
    for i, a in enumerate(activities):
        if not a.points or a.summary is None:
            continue
        for start in {a.start, a.own_start} - {None}:
            who.append(i)
            when.append(start.timestamp())
    if len(who) < 2:
        return
    who, when = np.array(who), np.array(when)
    order = np.argsort(when, kind="stable")
    who, when = who[order], when[order]
    # Runs of starts each within DUPLICATE_SECONDS of the one before; most are alone.
    run = np.concatenate([[0], np.cumsum(np.diff(when) > DUPLICATE_SECONDS)])
    sizes = np.bincount(run)
    summaries = [a.summary for a in activities]
    for r in np.flatnonzero(sizes > 1):
        entries = np.flatnonzero(run == r)
        yield from _pairs_in_run(who[entries], when[entries], summaries)


def _pairs_in_run(who, when, summaries) -> Iterable[tuple[int, int]]:
    """The matching pairs among entries close in time: each compared only with those
    whose first point is in its place tile or a neighbouring one."""
    first = np.array([summaries[i].first for i in who])
    last = np.array([summaries[i].last for i in who])
    length = np.array([summaries[i].length for i in who])
    col, row = world_pixels(first, _PLACE_ZOOM)
    tile_x, tile_y = (col // TILE_SIZE).astype(np.int64), (row // TILE_SIZE).astype(np.int64)
    by_tile = defaultdict(list)
    for e, key in enumerate(zip(tile_x.tolist(), tile_y.tolist())):
        by_tile[key].append(e)
    for (x, y), here in by_tile.items():
        near = np.array([e for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                         for e in by_tile.get((x + dx, y + dy), ())])
        if len(near) < 2:
            continue
        for start in range(0, len(here), _ROWS):
            rows = np.array(here[start:start + _ROWS])[:, None]
            match = ((np.abs(when[rows] - when[near]) <= DUPLICATE_SECONDS)
                     & (who[rows] != who[near])
                     & (_ground_distances(first[rows], first[near]) <= DUPLICATE_METRES)
                     & (_ground_distances(last[rows], last[near]) <= DUPLICATE_METRES))
            longer = np.maximum(length[rows], length[near])
            match &= np.abs(length[rows] - length[near]) <= np.maximum(
                DUPLICATE_LENGTH_RATIO * longer, DUPLICATE_METRES)
            i, j = np.nonzero(match)
            yield from zip(who[rows[i, 0]].tolist(), who[near[j]].tolist())


def _ground_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Metres on the ground between points a (n, 1, 2) and b (m, 2), broadcast (as
    _ground_distance)."""
    dx, dy = a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]
    return np.hypot(dx, dy) / np.cosh((a[..., 1] + b[..., 1]) / 2 / EARTH_RADIUS)
