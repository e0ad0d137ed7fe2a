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
- bad messages: a failure whose message is not one line starting with the file's name.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geoheat.reading import parse_file  # noqa: E402
from geoheat.sources import READER_FAILURE  # noqa: E402

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


def mutate(rng: random.Random, data: bytes, kind: str) -> tuple[str, bytes, int | None]:
    """(mutation name, mutated bytes, points a prefix parse keeps if it is a truncation)."""
    xml = kind in ("gpx", "tcx")
    choices = ["flip", "truncate", "duplicate", "delete", "truncate-gz"]
    if xml:
        choices += ["drop-point", "dup-point", "odd-latlon", "odd-time", "bom-blanks",
                    "utf16", "unclosed", "html", "flip-in-tags", "self-close"]
    how = rng.choice(choices)
    n = len(data)
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
    return parsed.error, parsed.note, parsed.points, parsed.invalid


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
    by_mutation: Counter = field(default_factory=Counter)
    slowest: tuple = (0.0, "")

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
               f"slowest           {self.slowest[0]:.2f} s ({self.slowest[1]})",
               "mutations         " + ", ".join(f"{k} {v}" for k, v in
                                                sorted(self.by_mutation.items()))]
        for label, items in (("crash", self.crashes), ("contained", self.contained),
                             ("hang", self.hangs), ("data lost", self.data_lost),
                             ("bad message", self.bad_messages)):
            for item in items[:8]:
                out.append(f"  {label}: {item}")
        return out


def run(files: int = 1500, seed: int = 1, time_limit: float = 10.0,
        sources: list[Path] | None = None, progress: bool = False,
        in_process: bool = False) -> Figures:
    """Mutate and read `files` files; the figures."""
    read = read_in_process if in_process else read_in_child
    rng = random.Random(seed)
    sources = sources if sources is not None else seed_files()
    if not sources:
        raise SystemExit(f"no seed files under {SHARED}")
    originals = {p: p.read_bytes() for p in sources}
    # Each format as often as the others: real folders hold far more GPX than TCX.
    by_kind: dict[str, list[Path]] = {}
    for p in sources:
        by_kind.setdefault(_kind(p), []).append(p)
    kinds = sorted(by_kind)
    figures = Figures()
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
                    error, note, points, invalid = read(path, time_limit)
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
    args = parser.parse_args()
    started = time.monotonic()
    figures = run(args.files, args.seed, args.time_limit, progress=True,
                  in_process=args.in_process)
    print("\n".join(figures.lines()))
    print(f"took {time.monotonic() - started:.1f} s")
    sys.exit(1 if figures.crashes or figures.hangs else 0)


if __name__ == "__main__":
    main()
