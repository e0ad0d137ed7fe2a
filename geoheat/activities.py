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
# Candidates are found by start time, then by the zoom-14 tile of the first point
# (~2.4 km, over 200 m on the ground at any latitude Web Mercator draws), so only
# activities near in time and place are compared.
_PLACE_ZOOM = 14


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
    kept = []
    for activity in unique:
        why = _left_out(activity, years, types)
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
    (repeat, the activity kept instead). Of copies, the one with the most points stays
    (the first listed of equals), with the most specific type any copy has (an export's
    VirtualRide over its file's Ride); a repeat is one of the kept one's, not of another
    repeat's, so a chain of near matches never joins two different activities.

    Near-linear: copies are found by a digest of the parsed track, and by start minute
    and place; only the few activities sharing those are compared.
    """
    copy_of = _identical(activities)
    originals = [i for i, first in enumerate(copy_of) if first == i]
    keeper = _near_keepers(activities, originals)
    final = [keeper.get(copy_of[i], copy_of[i]) for i in range(len(activities))]
    kinds = defaultdict(list)
    for i, top in enumerate(final):
        kinds[top].append(activities[i].activity_type)
    kept, repeats, winners = [], [], {}
    for i, activity in enumerate(activities):
        top = final[i]
        if top not in winners:
            winner = activities[top]
            kind = max(kinds[top], key=specificity)
            if specificity(kind) > specificity(winner.activity_type):
                winner = winner._replace(activity_type=kind)
            winners[top] = winner
        if i == top:
            kept.append(winners[top])
        else:
            repeats.append((activity, winners[top]))
    return kept, repeats


def _identical(activities: Sequence[ParsedFile]) -> list[int]:
    """For each activity, the first with the same parsed track and the same start by its
    file's own clock (an index may date the copies apart); a copy without times is one
    of the first timed one, if any."""
    copy_of = list(range(len(activities)))
    alike = defaultdict(list)  # the summary's ends and length: the digest only where equal
    for i, activity in enumerate(activities):
        s = activity.summary
        if s is not None:
            alike[s.points, s.first, s.last, s.length].append(i)
    for members in alike.values():
        if len(members) < 2:
            continue
        first_with: dict[tuple, int] = {}  # (digest, own start or None) -> the first such
        untimed = []
        for i in members:
            digest = track_digest(activities[i].summary)
            own = activities[i].own_start or activities[i].start
            if own is None:
                untimed.append((i, digest))
            else:
                copy_of[i] = first_with.setdefault((digest, own), i)
                first_with.setdefault((digest, None), i)
        for i, digest in untimed:
            copy_of[i] = first_with.setdefault((digest, None), i)
    return copy_of


def track_digest(summary: Summary) -> bytes:
    """A digest of a parsed track: equal for the same points (the summary is made from
    them, bit for bit: counts, ends, length, the cells and their bounds)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((summary.points, summary.first, summary.last, summary.length)).encode())
    for part in (summary.cells, summary.cell_points, summary.cell_bounds):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.digest()


def _near_keepers(activities: Sequence[ParsedFile], among: Sequence[int]) -> dict[int, int]:
    """The activities of `among` that repeat another (start within DUPLICATE_SECONDS by
    either start, tracks that agree: same_track), each mapped to the one kept instead:
    most points first, each claiming the matches not yet claimed."""
    who, when = [], []
    for i in among:
        a = activities[i]
        if a.points and a.summary is not None:
            for start in {a.start, a.own_start} - {None}:
                who.append(i)
                when.append(start.timestamp())
    if len(who) < 2:
        return {}
    who, when = np.array(who), np.array(when, dtype=np.float64)
    order = np.argsort(when, kind="stable")
    who, when = who[order], when[order]
    # Runs of starts each within DUPLICATE_SECONDS of the one before: most are alone,
    # and only starts in one run can match.
    run = np.concatenate([[0], np.cumsum(np.diff(when) > DUPLICATE_SECONDS)])
    crowded = np.bincount(run)[run] > 1
    who, when, run = who[crowded], when[crowded], run[crowded]
    if not len(who):
        return {}
    summaries = [activities[i].summary for i in who.tolist()]
    first = np.array([s.first for s in summaries])
    last = np.array([s.last for s in summaries])
    length = np.array([s.length for s in summaries])
    col, row = world_pixels(first, _PLACE_ZOOM)
    tile_x = (col // TILE_SIZE).astype(np.int64).tolist()
    tile_y = (row // TILE_SIZE).astype(np.int64).tolist()
    by_place = defaultdict(list)  # (run, tile x, tile y) -> entries
    entries_of = defaultdict(list)  # activity -> its entries
    run_list = run.tolist()
    for e, key in enumerate(zip(run_list, tile_x, tile_y)):
        by_place[key].append(e)
        entries_of[int(who[e])].append(e)
    taken = np.zeros(len(who), dtype=bool)  # entries of activities already decided
    keeper = {}
    around = {}  # (run, tile x, tile y) -> the entries in it and the 8 tiles around it

    def near_entries(key):
        if key not in around:
            r, x, y = key
            around[key] = np.array([c for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                                    for c in by_place.get((r, x + dx, y + dy), ())],
                                   dtype=np.int64)
        return around[key]

    for top in sorted(entries_of, key=lambda i: (-activities[i].points, i)):
        mine = entries_of[top]
        if taken[mine[0]]:
            continue
        for e in mine:
            near = near_entries((run_list[e], tile_x[e], tile_y[e]))
            near = near[~taken[near] & (who[near] != top)]
            if not len(near):
                continue
            longer = np.maximum(length[near], length[e])
            match = ((np.abs(when[near] - when[e]) <= DUPLICATE_SECONDS)
                     & (_ground_distances(first[near], first[e]) <= DUPLICATE_METRES)
                     & (_ground_distances(last[near], last[e]) <= DUPLICATE_METRES)
                     & (np.abs(length[near] - length[e])
                        <= np.maximum(DUPLICATE_LENGTH_RATIO * longer, DUPLICATE_METRES)))
            for other in set(who[near[match]].tolist()):
                keeper[other] = top
                taken[entries_of[other]] = True
        taken[mine] = True
    return keeper


def _ground_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Metres on the ground between points a (n, 2) and b (2,) or (n, 2), as
    _ground_distance."""
    dx, dy = a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]
    return np.hypot(dx, dy) / np.cosh((a[..., 1] + b[..., 1]) / 2 / EARTH_RADIUS)
