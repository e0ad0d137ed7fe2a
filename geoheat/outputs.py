"""A build's outputs change as one set, or not at all.

- One build at a time per set: a lock file beside the outputs (`.NAME.geoheat-lock`,
  for --output NAME.png) is held from the start of the build to its end; a second
  build of the same set stops at once with a clear message.
- Writers write into a staging folder beside each output (`.geoheat-stage.NAME.*`).
- The commit first writes a journal of every move, then renames the files into
  place, then removes the outputs of the previous set that this build did not make.
  A build killed during the commit leaves the journal: the next build of the set
  finishes the commit before it starts. Staging folders without a journal are the
  leftovers of a build that never reached its commit: removed.
- Errors name the output (never a temporary path) in one line: `OutputError`.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; builds of one set must not overlap
    fcntl = None

JOURNAL = "journal.json"


def _stage_prefix(stem: str) -> str:
    return f".geoheat-stage.{stem}."


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def describe_os_error(err: BaseException) -> str:
    """A short reason for a failed write, the same whichever layer raised it (GDAL wraps
    the cause: 'Write failed. See previous exception for details.')."""
    for cause in _chain(err):
        text = str(cause)
        if getattr(cause, "errno", None) == errno.ENOSPC or "No space left" in text \
                or "disk space" in text:
            return "no space left on the device"
    number = getattr(err, "errno", None)
    if number == errno.ENOSPC:
        return "no space left on the device"
    if number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return os.strerror(number).lower()
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text


class OutputSet:
    """The files one build writes; use as a context manager around the whole build.

    `temp(path)` gives where to write an output; `commit()` moves everything written
    into place as one set. Leaving the block without a commit removes what was staged.
    """

    def __init__(self, paths: Iterable[Path], primary: Path):
        self.paths = [Path(p) for p in paths]
        self.primary = Path(primary)  # the --output file: names the set, its lock and record
        self.stem = self.primary.stem
        self.folder = self.primary.parent
        self.lock_path = self.folder / f".{self.primary.stem}.geoheat-lock"
        self._lock_file = None
        self._stages: dict[Path, Path] = {}
        self._journal_written = False  # from then on the staging is the next build's to finish

    # The lock, and finishing what an earlier build left

    def __enter__(self) -> "OutputSet":
        for _ in range(10):
            try:
                lock_file = open(self.lock_path, "a+")
            except OSError as err:
                raise OutputError(f"{self.primary}: cannot write in {self.folder} "
                                  f"({describe_os_error(err)})") from None
            try:
                if fcntl is not None:
                    # A POSIX record lock, not flock: it belongs to this process alone, so
                    # worker processes forked while it is held (the parse pool) do not hold
                    # it too, and a build killed with -9 frees its set at once.
                    fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock_file.close()
                raise OutputError(
                    f"{self.primary}: another geoheat build is writing these outputs now; "
                    "wait for it to finish, or choose another --output") from None
            # A build that wrote nothing removes its lock file: if that happened between
            # our open and our lock, ours is gone from the folder; open it again.
            try:
                if os.stat(self.lock_path).st_ino == os.fstat(lock_file.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            lock_file.close()
        self._lock_file = lock_file
        self._recover()
        return self

    def __exit__(self, *exc) -> None:
        if not self._journal_written:
            for stage in self._stages.values():
                shutil.rmtree(stage, ignore_errors=True)
        self._stages.clear()
        if self._lock_file is not None:
            if not self._previous_set():  # no set here: a failed build leaves nothing
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def _recover(self) -> None:
        """Finish a commit an earlier build of this set began; drop stale staging."""
        folders = {p.parent for p in self.paths} | {self.folder}
        for folder in folders:
            with contextlib.suppress(OSError):
                for stage in folder.glob(_stage_prefix(self.stem) + "*"):
                    journal = stage / JOURNAL
                    if journal.is_file():
                        with contextlib.suppress(OSError, ValueError, KeyError):
                            self._finish(json.loads(journal.read_text()))
                    shutil.rmtree(stage, ignore_errors=True)

    # Writing

    def temp(self, path: Path) -> Path:
        """Where to write the output `path` (a staging folder beside it)."""
        path = Path(path)
        stage = self._stages.get(path.parent)
        if stage is None:
            try:
                stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(self.stem), dir=path.parent))
            except OSError as err:
                raise OutputError(f"{path}: cannot write ({describe_os_error(err)})") from None
            self._stages[path.parent] = stage
        return stage / path.name

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[Path]:
        """Write one output: yields its temporary path; any failure becomes one
        OutputError line naming the output."""
        try:
            with _c_stderr_kept_quiet():
                yield self.temp(path)
        except OutputError:
            raise
        except (OSError, MemoryError) as err:
            raise OutputError(f"{path}: cannot write ({_reason(err, path)})") from None
        except Exception as err:  # GDAL (rasterio) and sqlite3 raise their own types
            if type(err).__module__.split(".")[0] not in ("rasterio", "sqlite3"):
                raise
            raise OutputError(f"{path}: cannot write ({_reason(err, path)})") from None

    def commit(self) -> list[Path]:
        """Move every staged file into place as one set; the outputs' paths."""
        moves = [(str(written), str(folder / written.name))
                 for folder, stage in self._stages.items() for written in sorted(stage.iterdir())]
        for _, final in moves:
            if Path(final).is_dir():
                raise OutputError(f"{final}: cannot write (a folder is in the way); "
                                  "nothing was changed")
        finals = {final for _, final in moves}
        previous = self._previous_set()
        journal = {"moves": moves, "remove": sorted(set(previous) - finals),
                   "record": sorted(finals), "stages": [str(s) for s in self._stages.values()]}
        primary_stage = self._stages.get(self.folder) or next(iter(self._stages.values()))
        try:
            _write_atomic(primary_stage / JOURNAL, json.dumps(journal).encode())
            self._journal_written = True
            self._finish(journal)
        except OSError as err:
            raise OutputError(f"{self.primary}: cannot finish writing the outputs "
                              f"({describe_os_error(err)}); the next build finishes it") from None
        return self.paths

    def _finish(self, journal: dict) -> None:
        """Carry out a journal's moves and removals (again, if need be) and record the set."""
        for source, final in journal["moves"]:
            if os.path.lexists(source):
                os.replace(source, final)
        for stale in journal["remove"]:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(stale)
        self._record(journal["record"])
        for stage in journal.get("stages", []):
            shutil.rmtree(stage, ignore_errors=True)

    # The record of the last set, kept in the lock file

    def _previous_set(self) -> list[str]:
        try:
            self._lock_file.seek(0)
            record = json.loads(self._lock_file.read() or "{}")
            return [str(p) for p in record.get("outputs", [])]
        except (OSError, ValueError, AttributeError):
            return []

    def _record(self, finals: list[str]) -> None:
        if self._lock_file is None:
            return
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(json.dumps({"outputs": finals}))
        self._lock_file.flush()


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


# GDAL's own words for a full disk ('TIFFAppendToStrip:Write error at scanline 0') do not
# say so: a failed write with less than this free on the volume is put down to that.
NEARLY_FULL_BYTES = 1 << 20


def _reason(err: BaseException, path: Path) -> str:
    reason = describe_os_error(err)
    if reason != "no space left on the device":
        with contextlib.suppress(OSError):
            volume = os.statvfs(Path(path).parent)
            if volume.f_bavail * volume.f_frsize < NEARLY_FULL_BYTES:
                return "no space left on the device"
    return reason


@contextlib.contextmanager
def _c_stderr_kept_quiet() -> Iterator[None]:
    """Keep what C libraries print to the process's stderr (libtiff's raw
    '_tiffWriteProc: No space left on device.') off the user's terminal while an
    output is written: geoheat words the error itself."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
