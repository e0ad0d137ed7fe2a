"""Activity files at fsspec URLs (`s3://bucket/runs/`, `gs://...`, `https://...`,
`file:///shared/runs`), for a build on a Dask cluster: listed on the client with
fsspec, read on the workers, so each worker needs the filesystem's package and
credentials.

fsspec is part of the optional `dask` extra: imported inside functions.
"""

import posixpath
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import cache
from .errors import InputError, ParameterError
from .checks import NEEDS_DASK, is_url
from .options import DEFAULT_MAX_FILE_SIZE
from .reading import parse_file
from .source_bytes import Source, too_large
from .sources import find_sources, tree_sources


class UrlSource(NamedTuple):
    """An activity file at an fsspec URL, with what an activities.csv beside it says."""

    url: str
    activity_type: str | None = None
    date: datetime | None = None

    @property
    def name(self) -> str:
        return self.url

    @property
    def member(self) -> None:
        return None

def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise ParameterError(NEEDS_DASK.replace("--scheduler", "a URL input")) from None
    return fsspec


def find_all_sources(inputs: Iterable, pattern: str | None, warn) -> list:
    """sources.find_sources for local inputs, find_url_sources for URLs, in input order;
    each file once. InputError when nothing matches."""
    found, local = {}, []

    def flush():
        if local:
            for source in find_sources(local, pattern, on_warning=warn):
                found.setdefault(source.name, source)
            local.clear()

    for item in inputs:
        if is_url(item):
            flush()
            for source in find_url_sources(str(item), pattern, warn):
                found.setdefault(source.name, source)
        else:
            local.append(item)
    flush()
    return list(found.values())


def find_url_sources(url: str, pattern: str | None = None, warn=None) -> list[UrlSource]:
    """The activity files at an fsspec URL: a file, or every file under a prefix
    (sources' rules: hidden files left out, pattern, an activities.csv's listed files)."""
    fsspec = _fsspec()
    warn = warn or (lambda message: None)
    try:
        fs, root = fsspec.core.url_to_fs(url)
        if fs.isdir(root):
            base = root.rstrip("/")
            files = [f[len(base) + 1:] for f in fs.find(base) if f.startswith(base + "/")]
            kind = "folder"
        elif fs.isfile(root):
            files, kind = None, "file"
        else:
            raise InputError(f"{url}: no such file or folder")
    except InputError:
        raise
    except (ImportError, ValueError) as err:
        raise InputError(f"{url}: cannot be read ({err})") from None
    except Exception as err:  # noqa: BLE001 - filesystems raise many kinds
        raise InputError(f"{url}: cannot be listed ({type(err).__name__}: {err})") from None
    if kind == "file":
        if url.lower().endswith(".zip"):
            raise InputError(f"{url}: a zip over a URL is not read; unpack the export and give "
                             "its folder")
        return [UrlSource(url)]
    prefix = url.rstrip("/")

    def read_index(relative: str) -> bytes:
        with fs.open(f"{base}/{relative}", "rb") as f:
            return f.read()

    sources = tree_sources(files, read_index,
                            lambda rel, kind, date: UrlSource(f"{prefix}/{rel}", kind, date),
                            prefix, pattern, warn)
    if not sources:
        wanted = repr(pattern) if pattern else "any .gpx, .fit or .tcx file"
        raise InputError(f"{url}: no file matches {wanted}")
    return sources


def parse_url(url: str, max_bytes: int = DEFAULT_MAX_FILE_SIZE) -> cache.ParsedFile:
    """reading.parse_file of the file at an fsspec URL: fetched (at most max_bytes) into
    a private temporary folder under its own name, parsed there, named by its URL."""
    fsspec = _fsspec()
    base = posixpath.basename(url.rstrip("/")) or "activity.gpx"
    named = Source(Path(base)).format
    compressed = base.lower().endswith(".gz")

    def failed(reason: str) -> cache.ParsedFile:
        return cache.ParsedFile(url, np.empty((0, 2)), np.zeros(1, dtype=np.int64), None,
                                error=reason, format=named)

    try:
        with fsspec.open(url, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return failed(f"{url}: cannot read (No such file or directory)")
    except Exception as err:  # noqa: BLE001 - filesystems raise many kinds
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        return failed(f"{url}: cannot read ({detail})")
    if len(data) > max_bytes:
        # Compressed data this large inflates beyond the limit too (deflate never grows
        # data by more than 0.1%).
        return failed(str(too_large(url, max_bytes, compressed)))
    with tempfile.TemporaryDirectory(prefix="geoheat-url-") as folder:
        path = Path(folder) / base
        path.write_bytes(data)
        del data
        parsed = parse_file(Source(path), max_bytes)
    here = str(path)

    def renamed(text):
        return text.replace(here, url) if isinstance(text, str) else text

    return parsed._replace(name=url, error=renamed(parsed.error), note=renamed(parsed.note),
                           time_note=renamed(parsed.time_note))
