"""Where activities come from: files, folders, and Strava bulk exports (zip or unpacked).

When a folder or zip has activities.csv (export_index), the files it lists are the
activities, with the type and date it gives them; elsewhere every activity file (or
those a pattern names) is one. What each file is comes from its bytes when it is read
(sniff), never here; a file found that is not to be read says why (Source.unread).
"""

import fnmatch
import os
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath

from .errors import GPXError, InputError
from .export_index import (CSV_FIELD_LIMIT, EXPORT_INDEX, ExportIndexError, decode_csv,
                           listed_name, read_export_index)
from .source_bytes import FORMATS, Source, not_regular, open_zip, read_source
from .zip_salvage import salvage_zip

SUFFIXES = tuple(f".{fmt}{gz}" for fmt in FORMATS for gz in ("", ".gz"))

Warn = Callable[[str], None]


# --- finding sources ----------------------------------------------------------------

def _hidden(relative: str) -> bool:
    """Hidden files and folders, and the Finder's copies in __MACOSX."""
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.split("/"))


def _matches(name: str, pattern: str | None) -> bool:
    """Does a relative path match: a pattern with '/' matches the path, one without the
    file name at any depth ('**/x' also matches x at the top)."""
    base = PurePosixPath(name).name
    if pattern is None:
        return base.lower().endswith(SUFFIXES)
    if "/" in pattern:
        return (fnmatch.fnmatch(name, pattern) or
                (pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])))
    return fnmatch.fnmatch(base, pattern)


def _gz_key(name: str) -> str:
    """A listed file's key: case and .gz do not matter (people gunzip unpacked exports)."""
    return name.lower().removesuffix(".gz")


# Why a file found is not read (Source.unread): each a reason of its own in warnings.
NOT_IN_EXPORT = "listed in activities.csv but not in the export"
NOT_LISTED = "in the export but not listed in its activities.csv"
SECOND_COPY = "another copy of a file activities.csv lists (read once)"
ROUTE = "a planned route of the export, not an activity"
NESTED_ZIP = "a zip inside the zip, not read (unzip the outer zip and give its folder)"


def tree_sources(files: list[str], read_index: Callable[[str], bytes],
                  make: Callable[[str, str | None, datetime | None], Source], label: str,
                  pattern: str | None, warn: Warn) -> list[Source]:
    """The sources among `files` (relative POSIX paths of a folder or zip): each
    activities.csv's listed files for the tree under it, and matching files elsewhere.

    A listed file the export lacks, and an activity file it holds but does not list,
    are Sources with the reason in `unread` where `make` gives a Source (a URL
    tree's sources have no such field: those files are named in one warning instead).
    """
    files = [f for f in files if not _hidden(f)]
    indexes = sorted((f for f in files if PurePosixPath(f).name.lower() == EXPORT_INDEX),
                     key=lambda f: (f.count("/"), f))
    roots: dict[str, str] = {}  # export root -> its activities.csv
    for index in indexes:
        root = str(PurePosixPath(index).parent)
        if not any(root == r or r == "." or root.startswith(r + "/") for r in roots):
            roots[root] = index  # an index inside an export's tree is the export's own

    def under(f: str, root: str) -> bool:
        return root == "." or f.startswith(root + "/")

    unread: list[tuple[str, str, str | None, datetime | None]] = []  # (file, why, type, date)
    sources = [make(f, None, None) for f in sorted(files)
               if not any(under(f, r) for r in roots) and _matches(f, pattern)]
    for root, index in roots.items():
        members = [f for f in files if under(f, root)]
        where = f"{label}/{index}" if label else index

        def every_file(why: str) -> list[Source]:
            found = [make(f, None, None) for f in sorted(members) if _matches(f, pattern)]
            if found:
                warn(f"{where}: {why}; reading every activity file in the export instead, "
                     "without its types and dates")
            return found

        try:
            listed = read_export_index(decode_csv(read_index(index)))
        except (ExportIndexError, OSError, GPXError, zipfile.BadZipFile,
                RuntimeError, NotImplementedError) as err:
            sources += every_file(f"cannot be understood ({err})")
            continue
        listed = [(listed_name(filename), kind, date) for filename, kind, date in listed]
        listed = [entry for entry in listed if entry[0]]
        if not listed:  # header only, or no file in the column found: still an export
            sources += every_file("lists no activity file")
            continue
        present: dict[str, str] = {}
        for f in members:
            relative = f if root == "." else f[len(root) + 1:]
            present.setdefault(_gz_key(relative), f)
        for f in members:  # a listed name without its folder: by base name
            present.setdefault(_gz_key(PurePosixPath(f).name), f)
        found, missing, read = [], [], set()
        for filename, kind, date in listed:
            member = present.get(_gz_key(filename))
            if member is None:
                missing.append((f"{root}/{filename}" if root != "." else filename, kind, date))
            elif _matches(member, pattern) and member not in read:
                read.add(member)
                found.append(make(member, kind, date))
        if len(missing) == len(listed):
            sources += every_file(f"none of the {len(listed):,} files it lists is in the "
                                  "export")
            continue
        unread += [(f, NOT_IN_EXPORT, kind, date) for f, kind, date in missing
                   if _matches(f, pattern)]
        listed_keys = {_gz_key(filename) for filename, _, _ in listed}
        listed_keys |= {_gz_key(PurePosixPath(filename).name) for filename, _, _ in listed}

        def why_not_listed(f: str) -> str:
            relative = f if root == "." else f[len(root) + 1:]
            if _gz_key(relative) in listed_keys or _gz_key(PurePosixPath(f).name) in listed_keys:
                return SECOND_COPY
            return ROUTE if relative.lower().startswith("routes/") else NOT_LISTED

        unread += [(f, why_not_listed(f), None, None) for f in sorted(members)
                   if f not in read and _matches(f, pattern)]
        sources += found
    return sources + _unread_sources(unread, make, label, warn)


def _unread_sources(unread: list[tuple[str, str, str | None, datetime | None]],
                    make: Callable[[str, str | None, datetime | None], Source], label: str,
                    warn: Warn) -> list[Source]:
    """Sources that say why they are not read; or, where make gives sources of another
    kind (a URL tree), one warning per reason naming them."""
    made = [(make(f, kind, date), why) for f, why, kind, date in unread]
    if all(isinstance(source, Source) for source, _ in made):
        return [source._replace(unread=why) for source, why in made]
    by_reason: dict[str, list[str]] = {}
    for f, why, _, _ in unread:
        by_reason.setdefault(why, []).append(f)
    for why, names in by_reason.items():
        more = f" and {len(names) - 20:,} more" if len(names) > 20 else ""
        warn(f"{label}: not read, {why}: {len(names):,} file{'' if len(names) == 1 else 's'}"
             f" ({', '.join(names[:20])}{more})")
    return []


def _walk(folder: Path) -> list[str]:
    """Every non-folder entry under folder (recursively, hidden ones left out) as a
    relative POSIX path; entries of any kind, so a FIFO or broken link is reported."""
    found, seen = [], set()

    def visit(directory: Path, prefix: str) -> None:
        try:
            st = directory.stat()
            if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
                return
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                visit(Path(entry.path), relative + "/")
            else:
                found.append(relative)

    visit(folder, "")
    return found


def _from_zip(path: Path, pattern: str | None, warn: Warn) -> list[Source]:
    try:
        archive = open_zip(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as err:
        try:
            names = [name for name, copies in salvage_zip(path).items() for _ in copies]
        except (OSError, struct.error, zlib.error):
            names = []
        if not names:
            raise InputError(f"{path}: not a readable zip file ({err})") from None
        warn(f"{path}: a damaged zip or one cut short (no central directory); reading the "
             f"{len(names):,} files found in it from their own headers")
    except OSError as err:
        raise InputError(f"{path}: not a readable zip file ({err})") from None

    def read_index(member: str) -> bytes:
        return read_source(Source(path, member), CSV_FIELD_LIMIT * 4)

    copies = Counter(names)
    unique = list(copies)
    sources = tree_sources(unique, read_index,
                            lambda m, kind, date: Source(path, m, kind, date), str(path),
                            pattern, warn)
    twice = [name for name, n in copies.items() if n > 1]
    if twice:  # zipfile would read the last of them only: each is read, and named
        shown = ", ".join(twice[:3]) + (f" and {len(twice) - 3:,} more" if len(twice) > 3 else "")
        warn(f"{path}: {len(twice):,} name{' is' if len(twice) == 1 else 's are'} held by "
             f"more than one member ({shown}); reading each")
        sources = [copy for source in sources for copy in (
            [source._replace(copy=i) for i in range(copies[source.member])]
            if copies[source.member] > 1 else [source])]
    nested = [Source(path, name, unread=NESTED_ZIP) for name in unique
              if name.lower().endswith(".zip") and not _hidden(name)]
    return sources + nested


def _from_folder(folder: Path, pattern: str | None, warn: Warn) -> list[Source]:
    """The sources in a folder, and in the zips in it that hold activity files (Strava
    export zips kept where they were downloaded, several exports side by side)."""
    def read_index(relative: str) -> bytes:
        return read_source(Source(folder / relative), CSV_FIELD_LIMIT * 4)

    files = _walk(folder)
    sources = tree_sources(files, read_index,
                            lambda rel, kind, date: Source(folder / rel, None, kind, date),
                            str(folder), pattern, warn)
    for relative in files:
        if relative.lower().endswith(".zip") and not _hidden(relative):
            sources += _zip_in_folder(folder / relative, pattern, warn)
    return sources


def _zip_in_folder(path: Path, pattern: str | None, warn: Warn) -> list[Source]:
    """A zip found in a folder: its activity files; none, silently, for a zip of
    something else (photos); one unread Source if it cannot be opened, saying why."""
    try:
        what = not_regular(os.stat(path).st_mode)  # opening a FIFO would block
    except OSError as err:
        what = "a broken link" if os.path.islink(path) else (err.strerror or str(err))
    if what:
        return [Source(path, unread=f"a zip that cannot be read ({what})")]
    try:
        return _from_zip(path, pattern, warn)
    except InputError as err:
        reason = str(err).removeprefix(f"{path}: ")
        return [Source(path, unread=reason)]


def _starts_like_zip(path: Path) -> bool:
    """A zip by its first bytes: a browser may save an export without '.zip'."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def find_sources(inputs: Iterable[str | Path], pattern: str | None = None, *,
                 on_warning: Warn | None = None) -> list[Source]:
    """The activity files named by inputs: files, folders and Strava export zips.

    Folders are searched recursively (hidden files and folders left out).
    pattern: a glob on file names at any depth, or on the path relative to the
    folder if it holds '/' (None: every .gpx, .fit, .tcx, plain or .gz).
    A folder or zip holding activities.csv yields the files it lists; one that
    cannot be understood yields every activity file under it, and on_warning
    (if given) is called with one line saying so. Entries that are not regular
    files (FIFOs, devices, broken links) are listed: reading them fails with the
    reason, so they are counted as skipped. A zip that cannot be opened is skipped
    with a warning. Each file appears once. InputError for a missing input, or when
    nothing matches (saying why if a zip could not be opened).
    """
    warn = on_warning or (lambda message: None)
    found: dict[tuple[Path, str | None, int | None], Source] = {}
    inputs = [Path(item) for item in inputs]
    unreadable: list[str] = []
    for item in inputs:
        if item.is_dir():
            sources = _from_folder(item, pattern, warn)
        elif item.is_file() and (item.suffix.lower() == ".zip" or _starts_like_zip(item)):
            try:
                sources = _from_zip(item, pattern, warn)
            except InputError as err:  # one damaged zip among several inputs: skip it
                unreadable.append(str(err))
                warn(f"skipped {err}")
                continue
        elif item.is_file() or os.path.lexists(item):
            sources = [Source(item)]  # a FIFO or broken link fails on reading, saying so
        else:
            raise InputError(f"{item}: no such file or folder")
        for source in sources:
            found.setdefault((source.path, source.member, source.copy), source)
    if not found and unreadable:
        raise InputError("; ".join(unreadable))
    if not found:
        names = ", ".join(map(str, inputs))
        wanted = repr(pattern) if pattern else "any .gpx, .fit or .tcx file"
        raise InputError(f"{names}: no file matches {wanted}")
    return list(found.values())
