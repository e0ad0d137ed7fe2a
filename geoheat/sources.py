"""Where activities come from: files, folders, and Strava bulk exports (zip or unpacked).

A Strava export holds activities.csv and an activities/ folder mixing .gpx,
.gpx.gz, .fit.gz and .tcx.gz; when a folder or zip has activities.csv, the files
it lists are the activities, with the type and date it gives them. Zip members
and gzip files are read into memory, never unpacked to disk.
"""

import csv
import fnmatch
import gzip
import io
import zipfile
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .errors import GPXError, InputError
from .formats import activity_type

FORMATS = ("gpx", "fit", "tcx")
SUFFIXES = tuple(f".{fmt}{gz}" for fmt in FORMATS for gz in ("", ".gz"))
EXPORT_INDEX = "activities.csv"


class Source(NamedTuple):
    """One activity file: on disk, or a member of a zip; with what activities.csv says."""

    path: Path  # the file on disk (the zip, for a member)
    member: str | None = None  # the file's name inside the zip
    activity_type: str | None = None  # from activities.csv ("Activity Type")
    date: datetime | None = None  # from activities.csv ("Activity Date")

    @property
    def name(self) -> str:
        """How messages name it: the path, or zip:member."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    @property
    def format(self) -> str:
        """'gpx', 'fit' or 'tcx', from the name (anything else is tried as GPX)."""
        name = (self.member or self.path.name).lower().removesuffix(".gz")
        suffix = name.rsplit(".", 1)[-1]
        return suffix if suffix in FORMATS else "gpx"


def read_source(source: Source) -> bytes:
    """A source's bytes, unzipped and gunzipped in memory; GPXError if that fails."""
    try:
        if source.member is None:
            data = source.path.read_bytes()
        else:
            with zipfile.ZipFile(source.path) as archive:
                data = archive.read(source.member)
        if (source.member or source.path.name).lower().endswith(".gz"):
            data = gzip.decompress(data)
    except OSError as err:
        reason = err.strerror or str(err)
        raise GPXError(f"{source.name}: cannot read ({reason})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError) as err:
        raise GPXError(f"{source.name}: damaged compressed data ({err})") from None
    return data


def parse_strava_date(text: str) -> datetime | None:
    """activities.csv's 'Activity Date' (e.g. 'Feb 17, 2019, 6:26:44 AM', UTC)."""
    for layout in ("%b %d, %Y, %I:%M:%S %p", "%Y-%m-%d %H:%M:%S", "%d %b %Y, %H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), layout)
        except ValueError:
            continue
    return None


def read_export_index(text: str) -> list[tuple[str, str | None, datetime | None]]:
    """(file name, type, date) of each activity activities.csv lists with a file."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        filename = (row.get("Filename") or "").strip()
        if filename:
            rows.append((filename, activity_type(row.get("Activity Type")),
                         parse_strava_date(row.get("Activity Date") or "")))
    return rows


def _matches(name: str, pattern: str | None) -> bool:
    base = PurePosixPath(name).name
    if pattern is None:
        return base.lower().endswith(SUFFIXES)
    return fnmatch.fnmatch(base, pattern) or fnmatch.fnmatch(name, pattern)


def _from_zip(path: Path, pattern: str | None) -> list[Source]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            index = next((n for n in names if PurePosixPath(n).name == EXPORT_INDEX), None)
            listed = read_export_index(archive.read(index).decode("utf-8-sig")) if index else None
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path}: not a readable zip file ({err})") from None
    if listed is None:
        return [Source(path, n) for n in sorted(names) if _matches(n, pattern)]
    root = str(PurePosixPath(index).parent)
    present = set(names)
    sources = []
    for filename, kind, date in listed:
        member = filename if root == "." else f"{root}/{filename}"
        if member in present and _matches(member, pattern):
            sources.append(Source(path, member, kind, date))
    return sources


def _from_folder(folder: Path, pattern: str | None) -> list[Source]:
    index = folder / EXPORT_INDEX
    if index.is_file():
        listed = read_export_index(index.read_text(encoding="utf-8-sig"))
        return [Source(folder / filename, None, kind, date) for filename, kind, date in listed
                if (folder / filename).is_file() and _matches(filename, pattern)]
    if pattern:  # the glob is the choice ('**/' descends into sub-folders)
        return [Source(p) for p in sorted(folder.glob(pattern)) if p.is_file()]
    return [Source(p) for p in sorted(folder.iterdir()) if p.is_file() and _matches(p.name, None)]


def find_sources(inputs: Iterable[str | Path], pattern: str | None = None) -> list[Source]:
    """The activity files named by inputs: files, folders and Strava export zips.

    pattern: a glob on file names (None: every .gpx, .fit, .tcx, plain or .gz).
    A folder or zip holding activities.csv yields the files it lists. Each file
    appears once. InputError for a missing input or when nothing matches.
    """
    found: dict[tuple[Path, str | None], Source] = {}
    inputs = [Path(item) for item in inputs]
    for item in inputs:
        if item.is_dir():
            sources = _from_folder(item, pattern)
        elif item.is_file() and item.suffix.lower() == ".zip":
            sources = _from_zip(item, pattern)
        elif item.is_file():
            sources = [Source(item)]
        else:
            raise InputError(f"{item}: no such file or folder")
        for source in sources:
            found.setdefault((source.path, source.member), source)
    if not found:
        names = ", ".join(map(str, inputs))
        wanted = repr(pattern) if pattern else "any .gpx, .fit or .tcx file"
        raise InputError(f"{names}: no file matches {wanted}")
    return list(found.values())
