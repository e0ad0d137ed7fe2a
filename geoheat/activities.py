"""Parsed files to the activities a build draws: filtered by year and type, each once.

Works on the files' summaries (their points may still be in the parse cache); what
happened to every file is recorded in a BuildResult.
"""

from collections.abc import Iterable, Sequence

import numpy as np

from .cache import ParsedFile
from .formats import activity_type
from .report import BuildResult, FileEntry
from .summary import Summary
from .tiles import EARTH_RADIUS

# Two activities are one activity twice (a .gpx and a .fit of one ride, or two exports
# unpacked into one folder) only if they start within a minute of each other AND their
# tracks agree: first and last points within 200 m, lengths within 10%. A start time
# alone is not enough: converters write their own run time into every file.
DUPLICATE_SECONDS = 60
DUPLICATE_METRES = 200
DUPLICATE_LENGTH_RATIO = 0.10


def select_activities(
    parsed: Sequence[ParsedFile],
    years: Iterable[int] | None = None,
    types: Iterable[str] | None = None,
    keep_duplicates: bool = False,
) -> tuple[list[ParsedFile], BuildResult]:
    """Keep the activities of `years` and `types` (all if None), each once (unless
    keep_duplicates); count the rest, file by file, in a BuildResult. The kept ones are
    recorded as drawn by `record_drawn`, once the extent is known."""
    result = BuildResult(files=len(parsed))
    years = set(years) if years else None
    types = {activity_type(t) for t in types} if types else None
    kept = []
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
        why = _left_out(activity, years, types)
        if why:
            result.left_out[why] += 1
            result.points_left_out += activity.points
            result.entries.append(FileEntry.of(activity, "left_out", why))
            continue
        kept.append(activity)
    if not keep_duplicates:
        kept, repeats = drop_duplicates(kept)
        result.duplicates = len(repeats)
        result.points_left_out += sum(a.points for a, _ in repeats)
        result.entries += [FileEntry.of(a, "duplicate", f"the same activity as {first.name}")
                           for a, first in repeats]
    return kept, result


def record_drawn(result: BuildResult, kept: Sequence[ParsedFile], inside: np.ndarray) -> None:
    """Count the kept activities as drawn, by type and format, or as left out where none
    of their points is inside the extent (inside: one flag per activity)."""
    for activity, drawn in zip(kept, inside):
        if not drawn:
            result.left_out["outside the extent"] += 1
            result.entries.append(FileEntry.of(activity, "left_out", "outside the extent"))
            continue
        result.types[activity.activity_type or "unknown"] += 1
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
    if types is not None and activity.activity_type not in types:
        return "no type" if activity.activity_type is None else "other types"
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
    (repeat, the activity kept instead). Of a pair, the one with more points stays."""
    timed = sorted((a for a in activities if a.start is not None and a.points),
                   key=lambda a: a.start.timestamp())
    winner_of: dict[int, ParsedFile] = {}  # id(dropped) -> the one that beat it
    for i, first in enumerate(timed):
        if id(first) in winner_of:
            continue
        for second in timed[i + 1:]:
            if second.start.timestamp() - first.start.timestamp() > DUPLICATE_SECONDS:
                break
            if id(second) in winner_of or not same_track(first.summary, second.summary):
                continue
            if second.points <= first.points:
                winner_of[id(second)] = first
            else:
                winner_of[id(first)] = second
                break
    kept = [a for a in activities if id(a) not in winner_of]

    def final(activity):  # the kept one, through chains of wins
        while id(activity) in winner_of:
            activity = winner_of[id(activity)]
        return activity

    repeats = [(a, final(a)) for a in activities if id(a) in winner_of]
    return kept, repeats
