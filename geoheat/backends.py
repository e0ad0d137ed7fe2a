"""The counting backends, one front door: a build reads and counts through whichever
its options name, and records the count once (counting.record).

`local` (counting.LocalBackend): processes, the parse cache and the counts cache on
this machine. `dask` (cluster.DaskBackend, the `dask` extra, for --scheduler): the
files read and counted on a Dask cluster's workers, with the same functions, so the
counts are the local ones bit for bit. Each is a context manager for one output set.
"""

from collections.abc import Callable
from typing import Protocol

from .counting import Counted, LocalBackend


class Backend(Protocol):
    """What a build needs of a backend: its inputs read, then its kept activities counted."""

    name: str

    def read(self, options, warn, progress=None) -> tuple[list, list]:
        """(the sources of options.inputs, their ParsedFiles without points), in source
        order; the points stay with the backend until counted."""

    def count(self, kept, source_of, box, grids, options, result, warn=None,
              privacy=None) -> Counted:
        """The kept activities' points inside box counted on each of grids (privacy cut
        out), unrecorded."""

    def __enter__(self) -> "Backend": ...

    def __exit__(self, kind, error, trace) -> None: ...


def _dask(options) -> Backend:
    from .cluster import DaskBackend  # Dask is imported only with a scheduler

    return DaskBackend(options.scheduler)


# name -> a function of the build's options making the backend
BACKENDS: dict[str, Callable[..., Backend]] = {"local": LocalBackend, "dask": _dask}


def backend_name(options) -> str:
    """The backend a build's options ask for: `dask` with --scheduler, else `local`."""
    return "local" if options.scheduler is None else "dask"


def open_backend(options) -> Backend:
    """The backend for a build (a context manager: `with open_backend(options) as b`)."""
    return BACKENDS[backend_name(options)](options)
