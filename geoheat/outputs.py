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
- The lock file records the set: the folder's identity and each file's identity as
  written (device, inode, size, modification time). A file of the previous set is
  removed only when it is still the very file geoheat wrote there, and no other set's
  record lists it; otherwise it is left, with one warning line. A copied folder's
  record (another folder's identity) removes nothing. Links are never followed (an
  output that is one is replaced; a lock that is one is refused), and a lock file
  with other names (hard links) gets a name of its own before the record is written.
- geoheat's own names fit beside any output name the file system takes: a long set
  name becomes its start and a hash in the staging folder's and the lock's names.
- Errors name the output (never a temporary path) in one line: `OutputError`.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from .errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; builds of one set must not overlap
    fcntl = None

JOURNAL = "journal.json"
RECORD_VERSION = 2
LOCK_SUFFIX = ".geoheat-lock"
# What geoheat adds to a set's name: `.geoheat-stage.NAME.` and mkdtemp's 8 characters
# (letters, digits, _) for a staging folder, `.NAME.geoheat-lock` for the lock.
_STAGE_EXTRA = len(".geoheat-stage.") + 1 + 8
_STAGE_RANDOM = re.compile(r"[A-Za-z0-9_]+")  # no dot: not a set named NAME.x
# A record is a few hundred bytes; another set's lock file larger than this is not one.
_MAX_RECORD_BYTES = 1 << 20


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the folder's file system takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def set_tag(stem: str, limit: int = 255) -> str:
    """The set's name in geoheat's own file names: the stem, or, when the staging
    folder's name would then be too long, its start and a hash of the whole."""
    raw = os.fsencode(stem)
    if len(raw) + _STAGE_EXTRA <= limit:
        return stem
    digest = hashlib.sha1(raw).hexdigest()[:8]
    keep = raw[:max(limit - _STAGE_EXTRA - 9, 0)].decode("utf-8", "ignore")
    return f"{keep}~{digest}"


def _stage_prefix(tag: str) -> str:
    return f".geoheat-stage.{tag}."


def _is_stage_name(name: str, tag: str) -> bool:
    """A staging folder of this set (not of a set whose name starts like this one's)."""
    prefix = _stage_prefix(tag)
    return name.startswith(prefix) and bool(_STAGE_RANDOM.fullmatch(name[len(prefix):]))


def _identity(st: os.stat_result) -> list[int]:
    """What tells one file from another written there later: device, inode, size and
    modification time (a rewrite, even of the same bytes, changes one of them)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _folder_identity(folder: Path) -> list[int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


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


def check_destinations(files: Mapping[Path, Iterable[Path]]) -> None:
    """Refuse, before any work, an output with a folder in its place, or whose name, or
    the name of a file written beside it (files: output -> the names it needs), is
    longer than its file system allows."""
    for output, names in files.items():
        try:
            in_the_way = stat.S_ISDIR(os.lstat(output).st_mode)
        except OSError:
            in_the_way = False
        if in_the_way:
            raise OutputError(f"{output}: cannot write (a folder is in the way); "
                              "nothing was changed")
        for path in names:
            path = Path(path)
            limit = name_max(path.parent)
            size = len(os.fsencode(path.name))
            if size > limit:
                beside = "" if path == Path(output) else f" (with {path.name} beside it)"
                raise OutputError(f"{output}: name too long{beside}: {size} bytes, this "
                                  f"file system allows {limit}")


def check_replaceable_folder(folder: Path, temp_suffix: str = ".geoheat-site-tmp") -> None:
    """Refuse, before any work, a folder that cannot be written beside and renamed into
    place as a whole (a static site): the current folder or one holding it, a mount
    point, a name too long for the temporary `.NAME` + temp_suffix, an unwritable parent."""
    folder = Path(folder)
    real = folder.resolve()
    here = Path.cwd().resolve()
    if folder.name in ("", ".", "..") or real == here or real in here.parents:
        raise OutputError(f"{folder}: is the current folder or holds it, and would be "
                          "replaced as a whole: name a folder of its own (e.g. site)")
    if real.is_dir() and os.path.ismount(real):
        raise OutputError(f"{folder}: is a mount point and cannot be replaced: name a "
                          "folder inside it")
    parent = real.parent
    size = len(os.fsencode(f".{real.name}{temp_suffix}"))
    if size > name_max(parent):
        raise OutputError(f"{folder}: name too long (geoheat writes .NAME{temp_suffix} "
                          f"beside it first: {size} bytes, the file system allows "
                          f"{name_max(parent)})")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".geoheat-probe-", dir=parent))
    except OSError as err:
        raise OutputError(f"{folder}: cannot write in {parent} "
                          f"({describe_os_error(err)})") from None


def _open_no_follow(path: Path, flags: int) -> int:
    """An fd of path, a regular file, never through a link (O_NOFOLLOW), never blocking
    on a FIFO."""
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


class OutputSet:
    """The files one build writes; use as a context manager around the whole build.

    `temp(path)` gives where to write an output; `commit()` moves everything written
    into place as one set. Leaving the block without a commit removes what was staged.
    on_warning gets one line for each file of the previous set left in place.
    """

    def __init__(self, paths: Iterable[Path], primary: Path,
                 on_warning: Callable[[str], None] | None = None):
        self.paths = [Path(p) for p in paths]
        self.primary = Path(primary)  # the --output file: names the set, its lock and record
        self.stem = self.primary.stem
        self.folder = self.primary.parent
        # Absolute now: a record made from one working folder reads the same from another.
        self.root = Path(os.path.abspath(self.folder))
        self.tag = set_tag(self.stem, name_max(self.folder))
        self.lock_path = self.folder / f".{self.tag}{LOCK_SUFFIX}"
        self.warn = on_warning or (lambda message: None)
        self._lock_file = None
        self._stages: dict[Path, Path] = {}
        self._journal_written = False  # from then on the staging is the next build's to finish

    # The lock, and finishing what an earlier build left

    def __enter__(self) -> "OutputSet":
        for _ in range(10):
            try:
                lock_file = os.fdopen(_open_no_follow(self.lock_path, os.O_RDWR | os.O_CREAT),
                                      "r+", encoding="utf-8")
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.EINVAL, errno.EISDIR):
                    what = "a link" if os.path.islink(self.lock_path) else "not a regular file"
                    raise OutputError(
                        f"{self.primary}: {self.lock_path} (geoheat's lock and record of this "
                        f"set) is {what}; geoheat does not write through it: remove it, or "
                        "choose another --output") from None
                raise OutputError(f"{self.primary}: cannot write in {self.folder} "
                                  f"({describe_os_error(err)})") from None
            self._lock(lock_file)
            # A build that wrote nothing removes its lock file: if that happened between
            # our open and our lock, ours is gone from the folder; open it again.
            if self._lock_is_ours(lock_file):
                break
            lock_file.close()
        if os.fstat(lock_file.fileno()).st_nlink > 1:
            lock_file = self._unshared(lock_file)
        self._lock_file = lock_file
        self._recover()
        return self

    def _lock(self, lock_file) -> None:
        try:
            if fcntl is not None:
                # A POSIX record lock, not flock: it belongs to this process alone, so
                # worker processes forked while it is held (the parse pool) do not hold
                # it too, and a build killed with -9 frees its set at once.
                fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise self._busy() from None

    def _busy(self) -> OutputError:
        return OutputError(f"{self.primary}: another geoheat build is writing these outputs "
                           "now; wait for it to finish, or choose another --output")

    def _unshared(self, shared):
        """A lock file with other names too (a hard link: cp -al, rsync --link-dest) is
        replaced by one of its own holding the same record, locked before the shared one
        is let go: writing the record must not change the file under its other names."""
        shared.seek(0)
        record = shared.read(_MAX_RECORD_BYTES)
        try:
            os.unlink(self.lock_path)
            fd = _open_no_follow(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except OSError as err:
            shared.close()
            if err.errno == errno.EEXIST:  # another build took the new name first
                raise self._busy() from None
            raise OutputError(f"{self.primary}: cannot write in {self.folder} "
                              f"({describe_os_error(err)})") from None
        own = os.fdopen(fd, "r+", encoding="utf-8")
        self._lock(own)
        own.write(record)
        own.flush()
        shared.close()
        return own

    def _lock_is_ours(self, lock_file) -> bool:
        try:
            return _same_file(os.lstat(self.lock_path), os.fstat(lock_file.fileno()))
        except OSError:
            return False

    def __exit__(self, *exc) -> None:
        if not self._journal_written:
            for stage in self._stages.values():
                shutil.rmtree(stage, ignore_errors=True)
        self._stages.clear()
        if self._lock_file is not None:
            # No set here: a failed build leaves nothing (the lock file, if still ours).
            if not self._read_record() and self._lock_is_ours(self._lock_file):
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def _recover(self) -> None:
        """Finish a commit an earlier build of this set began; drop stale staging."""
        folders = {p.parent for p in self.paths} | {self.folder}
        for folder in folders:
            with contextlib.suppress(OSError):
                for stage in folder.iterdir():
                    if not _is_stage_name(stage.name, self.tag) or stage.is_symlink() \
                            or not stage.is_dir():
                        continue
                    journal = stage / JOURNAL
                    if journal.is_file() and not journal.is_symlink():
                        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                            self._finish(json.loads(journal.read_text()), stage)
                    shutil.rmtree(stage, ignore_errors=True)

    # Writing

    def temp(self, path: Path) -> Path:
        """Where to write the output `path` (a staging folder beside it)."""
        path = Path(path)
        stage = self._stages.get(path.parent)
        if stage is None:
            try:
                stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(self.tag),
                                              dir=os.path.abspath(path.parent)))
            except OSError as err:
                raise OutputError(f"{path}: cannot write ({_reason(err, path)})") from None
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
        try:
            staged = [(written, Path(os.path.abspath(folder)) / written.name)
                      for folder, stage in self._stages.items()
                      for written in sorted(stage.iterdir())]
            for _, final in staged:
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISDIR(os.lstat(final).st_mode):
                        raise OutputError(f"{final}: cannot write (a folder is in the way); "
                                          "nothing was changed")
            # Identities as written: a rename keeps the inode, size and time.
            made = [{"path": self._stored(final), "file": _identity(os.lstat(written))}
                    for written, final in staged]
            folder = _folder_identity(self.root)
            if folder is None:
                raise FileNotFoundError(errno.ENOENT, "the output folder is gone")
        except (FileNotFoundError, NotADirectoryError) as err:
            raise OutputError(f"{self.primary}: cannot write ({_reason(err, self.primary)}); "
                              "nothing was changed") from None
        finals = {str(final) for _, final in staged}
        journal = {
            "geoheat": RECORD_VERSION, "folder": folder,
            "moves": [[self._stored(written), self._stored(final)] for written, final in staged],
            "remove": [entry for entry in self._previous_set(finals)],
            "record": {"geoheat": RECORD_VERSION, "folder": folder, "outputs": made},
            "stages": [self._stored(s) for s in self._stages.values()]}
        primary_stage = self._stages.get(self.folder) or next(iter(self._stages.values()))
        try:
            _write_atomic(primary_stage / JOURNAL, json.dumps(journal).encode())
            self._journal_written = True
            self._finish(journal, primary_stage)
        except OSError as err:
            raise OutputError(f"{self.primary}: cannot finish writing the outputs "
                              f"({describe_os_error(err)}); the next build finishes it") from None
        return self.paths

    def _finish(self, journal: dict, stage: Path) -> None:
        """Carry out a journal's moves and removals (again, if need be) and record the
        set; a journal made for another folder (a copy of it) is not followed."""
        if journal.get("geoheat") != RECORD_VERSION \
                or journal.get("folder") != _folder_identity(self.root):
            self.warn(f"{self.primary}: an unfinished commit ({stage.name}) was not made in "
                      "this folder (a copy of it?) or by this geoheat; left undone")
            return
        stages = [self._path(s) for s in journal["stages"]]
        for source, final in journal["moves"]:
            source, final = self._path(source), self._path(final)
            # Only from a staging folder of this journal into the folder holding it.
            if source.parent in stages and source.parent.parent == final.parent \
                    and os.path.lexists(source):
                os.replace(source, final)
        for entry in journal["remove"]:
            self._remove_stale(entry)
        self._record(journal["record"])
        for folder in stages:
            if _is_stage_name(folder.name, self.tag) and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)

    # Paths in the record and journal: relative to the set's folder when inside it (so a
    # moved folder keeps its record), absolute elsewhere

    def _stored(self, path: Path) -> str:
        path = Path(os.path.abspath(path))
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def _path(self, stored: str) -> Path:
        return self.root / stored  # an absolute stored path stays as it is

    # The record of the last set, kept in the lock file

    def _read_record(self) -> dict | list | None:
        try:
            self._lock_file.seek(0)
            return json.loads(self._lock_file.read(_MAX_RECORD_BYTES) or "null")
        except (OSError, ValueError, AttributeError):
            return None

    def _previous_set(self, finals: set[str]) -> list[dict]:
        """The previous set's files this build does not make, as recorded, that geoheat
        may remove: none when the record cannot prove them ours (one warning line)."""
        record = self._read_record()
        if not record:
            return []
        if not isinstance(record, dict) or record.get("geoheat") != RECORD_VERSION:
            # An older geoheat's record: paths as typed, no identities; nothing is proved.
            entries = record.get("outputs", []) if isinstance(record, dict) else []
            names = {Path(str(p)).name for p in entries if isinstance(p, str)}
            left = sorted(names - {Path(f).name for f in finals})
            if left:
                self.warn(f"{self.primary}: the record of the previous set is an older "
                          f"geoheat's; its files this build does not make are left in "
                          f"place: {', '.join(left)}")
            return []
        entries = record.get("outputs", [])
        stale = [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str)
                 and str(self._path(e["path"])) not in finals]
        if stale and record.get("folder") != _folder_identity(self.root):
            self.warn(f"{self.primary}: the record of the previous set was made in another "
                      "folder (a copy of it?); its files this build does not make are left "
                      f"in place: {', '.join(sorted(Path(e['path']).name for e in stale))}")
            return []
        return stale

    def _remove_stale(self, entry: dict) -> None:
        """Remove a file of the previous set if it is still the one geoheat wrote (same
        device, inode, size and time; not a link) and no other set lists it."""
        path = self._path(entry["path"])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as err:
            self.warn(f"{path}: left in place ({describe_os_error(err)})")
            return
        if not stat.S_ISREG(st.st_mode) or _identity(st) != entry.get("file"):
            self.warn(f"{path}: left in place: no longer the file geoheat wrote for "
                      f"{self.primary.name} (changed or replaced since)")
            return
        other = self._claimed_elsewhere(path)
        if other is not None:
            self.warn(f"{path}: left in place: another set's record ({other.name}) lists it")
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _claimed_elsewhere(self, path: Path) -> Path | None:
        """The lock file of another set, in path's folder or this set's, listing path."""
        for folder in {path.parent, self.root}:
            with contextlib.suppress(OSError):
                for lock in folder.iterdir():
                    if not lock.name.endswith(LOCK_SUFFIX) or lock.name == self.lock_path.name:
                        continue
                    if _lists(lock, path):
                        return lock
        return None

    def _record(self, record: dict) -> None:
        if self._lock_file is None:
            return
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(json.dumps(record))
        self._lock_file.flush()


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _lists(lock: Path, path: Path) -> bool:
    """Whether another set's record (read without following links) lists path: by its
    name in the lock's folder or its absolute path; an older geoheat's record (paths as
    typed, from an unknown folder) by the file's name alone."""
    try:
        fd = _open_no_follow(lock, os.O_RDONLY)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        try:
            record = json.loads(f.read(_MAX_RECORD_BYTES) or b"null")
        except ValueError:
            return False
    if not isinstance(record, dict) or not isinstance(record.get("outputs"), list):
        return False
    if record.get("geoheat") != RECORD_VERSION:
        return any(isinstance(p, str) and Path(p).name == path.name for p in record["outputs"])
    return any(isinstance(e, dict) and isinstance(e.get("path"), str)
               and lock.parent / e["path"] == path for e in record["outputs"])


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
    folder = Path(path).parent
    if getattr(err, "errno", None) in (errno.ENOENT, errno.ENOTDIR) and not folder.is_dir():
        return f"its folder {folder} was removed"  # during the build
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
