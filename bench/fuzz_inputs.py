"""Fuzz geoheat's readers with mutated real activity files (GPX, TCX, FIT from ../shared).

    .venv/bin/python bench/fuzz_inputs.py --files 1500 --seed 1

Formats are drawn equally often (then a file of that format). Each mutation of a
real file (byte flips, truncation, duplicated or deleted chunks, and XML-valid
ones: deleted or duplicated trackpoints, odd lat/lon/time values, a BOM, blank
lines, UTF-16, gzip) is written to a temporary folder and read with
reading.parse_file under a per-file time limit: by default in a forked child per
file (a reader that segfaults or hangs is counted, not fatal to the harness); with
--in-process in this process under signal.setitimer (faster; what tests/test_fuzz.py
uses).

Counted:
- crashes: an exception escaping parse_file (target 0);
- contained: parse_file caught an unexpected exception from a reader (a reader bug
  that no longer ends the run; listed so it can be fixed);
- hangs: a file over the time limit;
- data lost: a truncated GPX or TCX keeping fewer points than a prefix parse could
  (the complete trackpoints before the cut);
- bad messages: a failure whose message is not one line starting with the file's name;
- off track (FIT): a mutated FIT file read with positions more than 1 km from every
  position of the original file (target 0: a damaged message must end the reading or be
  left out, never be drawn as garbage). With compare_sdk (the default on the command
  line), the same count for Garmin's SDK on the same bytes, for comparison.
FIT files also get mutations of their own: one byte set to a random value, and a
message header byte changed (a record read as a compressed-timestamp header, say).
Same seed, same mutations.
"""

import argparse
import gzip
import os
import pickle
import select
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geoheat.reading import parse_file  # noqa: E402
from geoheat.reading import READER_FAILURE  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
ODD_NUMBERS = [b"", b"nan", b"NaN", b"inf", b"-inf", b"1e999", b"-91", b"91.5", b"181",
               b"-180.0000001", b"abc", b"0", b"0.0", b"1,5", b" 46.1 ", b"4" * 400,
               b"&amp;", b"0x10", b"--1"]
ODD_TIMES = [b"", b"0000-00-00T00:00:00Z", b"1970-01-01T00:00:00Z", b"9999-12-31T23:59:59Z",
             b"2024-02-30T10:00:00Z", b"not a time", b"2024-01-01T25:61:61Z", b"1" * 300,
             b"2024-01-01", b"2024-01-01T10:00:00+99:00", b"-2024-01-01T00:00:00Z"]


def seed_files(limit_per_folder: int = 40) -> list[Path]:
    """Real files to mutate: small ones first (a mutation of a 2 MB file costs more
    to read and finds the same bugs)."""
    files = []
    for name in ("gpx-variety", "fit-tcx", "garmin-tree", "chengdu-runs"):
        folder = SHARED / name
        if folder.is_dir():
            found = sorted((p for p in folder.rglob("*") if p.is_file()),
                           key=lambda p: (p.stat().st_size, p.name))
            files += found[:limit_per_folder]
    return files


def _points_in_prefix(data: bytes, kind: str) -> int:
    """The complete trackpoints with a position in a prefix of a file: what any reader
    keeping 'the points before the break' should keep."""
    if kind == "gpx":
        return len(re.findall(rb"<(?:\w+:)?trkpt\b[^>]*?(?:/>|>.*?</(?:\w+:)?trkpt>)", data,
                              re.S))
    if kind == "tcx":
        blocks = re.findall(rb"<Trackpoint>.*?</Trackpoint>", data, re.S)
        return sum(1 for b in blocks if b"<LatitudeDegrees>" in b and b"<LongitudeDegrees>" in b)
    return 0


def _kind(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in ("gpx", "tcx", "fit") else "gpx"


def _swap_values(rng: random.Random, data: bytes, pattern: bytes, values: list[bytes]) -> bytes:
    matches = list(re.finditer(pattern, data))
    if not matches:
        return data
    out = bytearray(data)
    for m in sorted(rng.sample(matches, min(len(matches), rng.randint(1, 5))),
                    key=lambda m: m.start(1), reverse=True):
        out[m.start(1):m.end(1)] = rng.choice(values)
    return bytes(out)


def _elements(data: bytes, tag: bytes) -> list[re.Match]:
    return list(re.finditer(rb"<(?:\w+:)?" + tag + rb"\b[^>]*?(?:/>|>.*?</(?:\w+:)?" + tag
                            + rb">)", data, re.S))


def fit_message_starts(data: bytes) -> list[int]:
    """Where each message of a FIT file's first chained file starts (its header byte),
    by a plain walk; stops at the first thing it cannot follow."""
    if len(data) < 14 or data[0] not in (12, 14) or data[8:12] != b".FIT":
        return []
    p, end = data[0], min(len(data), data[0] + int.from_bytes(data[4:8], "little"))
    sizes, starts = {}, []
    try:
        while p < end:
            h, starts = data[p], starts + [p]
            if h & 0x80:
                p += sizes[(h >> 5) & 3]
            elif h & 0x40:
                n = data[p + 5]
                size = 1 + sum(data[p + 7 + 3 * i] for i in range(n))
                q = p + 6 + 3 * n
                if h & 0x20:
                    size += sum(data[q + 2 + 3 * i] for i in range(data[q]))
                    q += 1 + 3 * data[q]
                sizes[h & 0x0F], p = size, q
            else:
                p += sizes[h & 0x0F]
    except (KeyError, IndexError):
        pass
    return starts


def mutate(rng: random.Random, data: bytes, kind: str) -> tuple[str, bytes, int | None]:
    """(mutation name, mutated bytes, points a prefix parse keeps if it is a truncation)."""
    xml = kind in ("gpx", "tcx")
    choices = ["flip", "truncate", "duplicate", "delete", "truncate-gz"]
    if xml:
        choices += ["drop-point", "dup-point", "odd-latlon", "odd-time", "bom-blanks",
                    "utf16", "unclosed", "html", "flip-in-tags", "self-close"]
    else:
        choices += ["one-byte", "one-byte", "header-byte", "header-byte"]
    how = rng.choice(choices)
    n = len(data)
    if how == "one-byte":
        out = bytearray(data)
        out[rng.randrange(n)] = rng.randrange(256)
        return how, bytes(out), None
    if how == "header-byte":
        starts = fit_message_starts(data)
        if not starts:
            return how, data, None
        out = bytearray(data)
        at = rng.choice(starts)
        # Bit 7 (a compressed-timestamp header), or another local type or kind.
        out[at] = out[at] ^ 0x80 if rng.random() < 0.5 else rng.randrange(256)
        return how, bytes(out), None
    if how == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        return how, bytes(out), None
    if how in ("truncate", "truncate-gz"):
        cut = rng.randrange(n)
        prefix = data[:cut]
        keep = _points_in_prefix(prefix, kind) if xml else None
        if how == "truncate-gz":
            packed = gzip.compress(data)
            return how, packed[: max(20, int(len(packed) * cut / max(n, 1)))], None
        return how, prefix, keep
    if how == "duplicate":
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 4096))
        at = rng.randrange(n)
        return how, data[:at] + data[a:b] + data[at:], None
    if how == "delete":
        a = rng.randrange(n)
        return how, data[:a] + data[a + rng.randint(1, 4096):], None
    if how == "flip-in-tags":  # break a tag name or attribute, not the text between
        out = bytearray(data)
        opens = [m.start() for m in re.finditer(rb"<", data)]
        for i in rng.sample(opens, min(len(opens), rng.randint(1, 5))):
            j = min(n - 1, i + rng.randint(1, 12))
            out[j] = rng.choice(b"<>/\"'= \x00&")
        return how, bytes(out), None
    tag = b"trkpt" if kind == "gpx" else b"Trackpoint"
    if how in ("drop-point", "dup-point"):
        points = _elements(data, tag)
        if not points:
            return how, data, None
        m = rng.choice(points)
        middle = b"" if how == "drop-point" else m.group() * rng.randint(2, 50)
        return how, data[:m.start()] + middle + data[m.end():], None
    if how == "odd-latlon":
        if kind == "gpx":
            return how, _swap_values(rng, data, rb'\b(?:lat|lon)="([^"]*)"', ODD_NUMBERS), None
        return how, _swap_values(rng, data, rb"<(?:Latitude|Longitude)Degrees>([^<]*)<",
                                 ODD_NUMBERS), None
    if how == "odd-time":
        pattern = rb"<(?:\w+:)?time>([^<]*)<" if kind == "gpx" else rb"<(?:Time|Id)>([^<]*)<"
        return how, _swap_values(rng, data, pattern, ODD_TIMES), None
    if how == "bom-blanks":
        head = rng.choice([b"\xef\xbb\xbf", b"", b"\xef\xbb\xbf\n"])
        return how, head + b"\n \r\n\t" + data, None
    if how == "utf16":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return how, data, None
        return how, text.encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be"])), None
    if how == "unclosed":  # remove a closing tag: well-formedness breaks mid-file
        closes = list(re.finditer(rb"</[^>]+>", data))
        if not closes:
            return how, data, None
        m = rng.choice(closes)
        return how, data[:m.start()] + data[m.end():], None
    if how == "html":
        page = b"<!DOCTYPE html><html><body><pre>" + data[:2000] + b"</pre></body></html>"
        return how, page, None
    if how == "self-close":  # <trkpt ...>...</trkpt> -> <trkpt .../>
        return how, re.sub(rb"<(trkpt|Trackpoint)(\b[^>]*?)>.*?</\1>", rb"<\1\2/>", data,
                           count=rng.randint(1, 1000), flags=re.S), None
    raise AssertionError(how)


class Timeout(Exception):
    pass


class Crash(Exception):
    """An exception that escaped parse_file, or the death of the child reading."""


def _alarm(signum, frame):
    raise Timeout()


def _summary(parsed):
    return parsed.error, parsed.note, parsed.points, parsed.invalid, parsed.xy


EARTH_KM = 6371.0088


def _unit_vectors(lonlat):
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


class Track:
    """An original file's positions: how far a mutated file's positions are from them."""

    def __init__(self, lonlat):
        from scipy.spatial import cKDTree

        self.tree = cKDTree(_unit_vectors(lonlat)) if len(lonlat) else None

    def off(self, lonlat, km: float = 1.0) -> tuple[int, float]:
        """(how many positions are more than km from every original one, the farthest km)."""
        if not len(lonlat):
            return 0, 0.0
        if self.tree is None:
            return len(lonlat), float("inf")
        chord, _ = self.tree.query(_unit_vectors(lonlat))
        distance = 2 * EARTH_KM * np.arcsin(np.minimum(chord / 2, 1.0))
        return int((distance > km).sum()), float(distance.max())


def xy_lonlat(xy):
    from geoheat.projection import unproject

    return unproject(xy) if len(xy) else np.empty((0, 2))


def sdk_lonlat(data: bytes) -> "np.ndarray | None":
    """The positions Garmin's SDK reads from the bytes (None if it reads none)."""
    from geoheat import fit

    try:
        activity, _ = fit.read_fit_sdk(data, "mutated.fit")
    except Exception:  # noqa: BLE001 - a GPXError, or the SDK's own failures
        return None
    return np.concatenate(activity.segments) if activity.segments else None


def _escaped(err: BaseException) -> str:
    last = traceback.extract_tb(err.__traceback__)[-1]
    return f"{type(err).__name__}: {err} ({Path(last.filename).name}:{last.lineno})"


def read_in_process(path: Path, time_limit: float):
    """parse_file's (error, note, points, invalid), under a SIGALRM time limit."""
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        return _summary(parse_file(path))
    except Timeout:
        raise
    except Exception as err:
        raise Crash(_escaped(err)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def read_in_child(path: Path, time_limit: float):
    """parse_file's (error, note, points, invalid), read in a forked child: a segfault
    or a hang costs the child, and is counted."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, report, exit without cleanup
        os.close(r)
        try:
            payload = ("ok", _summary(parse_file(path)))
        except BaseException as err:  # noqa: BLE001
            payload = ("exception", _escaped(err))
        with os.fdopen(w, "wb") as out:
            out.write(pickle.dumps(payload))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], time_limit)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise Timeout()
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise Crash(f"the reading process died of signal {os.WTERMSIG(status)}")
    kind, payload = pickle.loads(data)
    if kind != "ok":
        raise Crash(payload)
    return payload


@dataclass
class Figures:
    tried: int = 0
    read: int = 0  # parsed with points
    partial: int = 0  # read with a note (broken off)
    skipped: int = 0  # a GPXError-style error message
    crashes: list = field(default_factory=list)
    contained: list = field(default_factory=list)
    hangs: list = field(default_factory=list)
    data_lost: list = field(default_factory=list)
    bad_messages: list = field(default_factory=list)
    off_track: list = field(default_factory=list)  # FIT: positions > 1 km from the original
    fit_read: int = 0  # mutated FIT files read with positions
    sdk_off_track: list = field(default_factory=list)  # the SDK on the same bytes
    by_mutation: Counter = field(default_factory=Counter)
    slowest: tuple = (0.0, "")
    show: int = 8  # examples listed of each kind
    sdk_compared: bool = False

    def lines(self) -> list[str]:
        out = [f"files tried       {self.tried:,}",
               f"read              {self.read:,} (of them {self.partial:,} broken off, "
               "points before the break kept)",
               f"skipped, a reason {self.skipped:,}",
               f"crashes           {len(self.crashes):,}",
               f"contained         {len(self.contained):,} (a reader raised; parse_file "
               "caught it)",
               f"hangs             {len(self.hangs):,}",
               f"data lost         {len(self.data_lost):,}",
               f"bad messages      {len(self.bad_messages):,}",
               f"FIT off track     {len(self.off_track):,} of {self.fit_read:,} FIT files read "
               "(positions > 1 km from the original track)",
               f"  the SDK         {len(self.sdk_off_track):,} (the same bytes, Garmin's SDK)"
               if self.sdk_compared else "  the SDK         not compared (--no-sdk)",
               f"slowest           {self.slowest[0]:.2f} s ({self.slowest[1]})",
               "mutations         " + ", ".join(f"{k} {v}" for k, v in
                                                sorted(self.by_mutation.items()))]
        for label, items in (("crash", self.crashes), ("contained", self.contained),
                             ("hang", self.hangs), ("data lost", self.data_lost),
                             ("bad message", self.bad_messages),
                             ("off track", self.off_track),
                             ("SDK off track", self.sdk_off_track)):
            for item in items[:self.show]:
                out.append(f"  {label}: {item}")
        return out


def run(files: int = 1500, seed: int = 1, time_limit: float = 10.0,
        sources: list[Path] | None = None, progress: bool = False,
        in_process: bool = False, compare_sdk: bool = False, show: int = 8) -> Figures:
    """Mutate and read `files` files; the figures. compare_sdk: also read each mutated
    FIT file with Garmin's SDK and count its positions off the track."""
    read = read_in_process if in_process else read_in_child
    rng = random.Random(seed)
    sources = sources if sources is not None else seed_files()
    if not sources:
        raise SystemExit(f"no seed files under {SHARED}")
    originals = {p: p.read_bytes() for p in sources}
    tracks: dict[Path, Track] = {}  # each FIT original's positions, read once
    # Each format as often as the others: real folders hold far more GPX than TCX.
    by_kind: dict[str, list[Path]] = {}
    for p in sources:
        by_kind.setdefault(_kind(p), []).append(p)
    kinds = sorted(by_kind)
    figures = Figures(show=show, sdk_compared=compare_sdk)
    previous = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory(prefix="geoheat-fuzz-") as temp:
        try:
            for i in range(files):
                original = rng.choice(by_kind[rng.choice(kinds)])
                kind = _kind(original)
                how, data, keep = mutate(rng, originals[original], kind)
                path = Path(temp) / f"{i:05d}-{how}-{original.name}"
                path.write_bytes(data)
                figures.tried += 1
                figures.by_mutation[how] += 1
                started = time.monotonic()
                try:
                    error, note, points, invalid, xy = read(path, time_limit)
                except Timeout:
                    figures.hangs.append(f"{path.name} (> {time_limit:g} s)")
                    continue
                except Crash as crash:
                    figures.crashes.append(f"{path.name}: {crash}")
                    continue
                spent = time.monotonic() - started
                if spent > figures.slowest[0]:
                    figures.slowest = (spent, path.name)
                if error:
                    figures.skipped += 1
                    if not error.startswith(f"{path}: ") or "\n" in error:
                        figures.bad_messages.append(error[:200])
                    if READER_FAILURE in error:
                        figures.contained.append(error.replace(str(path), path.name)[:200])
                else:
                    figures.read += 1
                    figures.partial += note is not None
                    if note is not None and (not note.startswith(f"{path}: ") or "\n" in note):
                        figures.bad_messages.append(note[:200])
                if kind == "fit":
                    if original not in tracks:
                        tracks[original] = Track(xy_lonlat(parse_file(original).xy))
                    track = tracks[original]
                    if not error and points:
                        figures.fit_read += 1
                        off, farthest = track.off(xy_lonlat(xy))
                        if off:
                            figures.off_track.append(f"{path.name}: {off:,} of {points:,} "
                                                     f"positions off, up to {farthest:,.0f} km")
                    if compare_sdk:
                        theirs = sdk_lonlat(data)
                        off, farthest = track.off(theirs if theirs is not None
                                                  else np.empty((0, 2)))
                        if off:
                            figures.sdk_off_track.append(
                                f"{path.name}: {off:,} of {len(theirs):,} positions off, "
                                f"up to {farthest:,.0f} km")
                if keep is not None:
                    got = 0 if error else points + invalid
                    if got < keep:
                        figures.data_lost.append(f"{path.name}: kept {got} of {keep} "
                                                 f"({(error or note or '')[-90:]})")
                if progress and (i + 1) % 100 == 0:
                    print(f"  {i + 1:,} files", file=sys.stderr, flush=True)
                path.unlink()
        finally:
            signal.signal(signal.SIGALRM, previous)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per file")
    parser.add_argument("--in-process", action="store_true",
                        help="read in this process (faster; a segfault ends the run)")
    parser.add_argument("--fit-only", action="store_true",
                        help="mutate only the FIT files (the off-track check)")
    parser.add_argument("--show", type=int, default=8, help="examples listed of each kind")
    parser.add_argument("--no-sdk", action="store_true",
                        help="do not read the mutated FIT files with the SDK too")
    args = parser.parse_args()
    started = time.monotonic()
    sources = [p for p in seed_files() if _kind(p) == "fit"] if args.fit_only else None
    figures = run(args.files, args.seed, args.time_limit, sources=sources, progress=True,
                  in_process=args.in_process, compare_sdk=not args.no_sdk,
                  show=args.show)
    print("\n".join(figures.lines()))
    print(f"took {time.monotonic() - started:.1f} s")
    sys.exit(1 if figures.crashes or figures.hangs or figures.off_track else 0)


if __name__ == "__main__":
    main()
