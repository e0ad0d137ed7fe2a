"""The record of an output set, kept in its lock file (`.NAME.geoheat-lock`, for
--output NAME.png), which is held from the start of a build to its end: a second build
of the same set stops at once with a clear message.

The record holds the folder's identity and each file's identity as written (device,
inode, size, modification time), with paths relative to the set's folder. A file of
the previous set is removed only when it is still the very file geoheat wrote there,
and no other set's record lists it; otherwise it is left, with one warning line. A
copied folder's record (another folder's identity) removes nothing. A lock that is a
link is refused; a lock file with other names (hard links) gets a name of its own
before the record is written.
"""

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import OutputError
from .outputerrors import describe_os_error

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; builds of one set must not overlap
    fcntl = None

RECORD_VERSION = 2
LOCK_SUFFIX = ".geoheat-lock"
# A record is a few hundred bytes; another set's lock file larger than this is not one.
_MAX_RECORD_BYTES = 1 << 20


def identity(st: os.stat_result) -> list[int]:
    """What tells one file from another written there later: device, inode, size and
    modification time (a rewrite, even of the same bytes, changes one of them)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def folder_identity(folder: Path) -> list[int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


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


class SetRecord:
    """The lock file of one output set, held while a build runs, and the record of the
    set it keeps. on_warning gets one line for each file of the previous set left."""

    def __init__(self, lock_path: Path, primary: Path, root: Path,
                 on_warning: Callable[[str], None]):
        self.lock_path = lock_path
        self.primary = primary  # the --output file: names the set
        self.folder = primary.parent
        self.root = root  # the set's folder, absolute
        self.warn = on_warning
        self._lock_file = None

    # The lock

    def hold(self) -> None:
        """Open and lock the set's lock file (OutputError if another build holds it)."""
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

    def release(self) -> None:
        """Let the lock go; a lock file with no record (a failed first build) is removed."""
        if self._lock_file is not None:
            # No set here: a failed build leaves nothing (the lock file, if still ours).
            if not self.read() and self._lock_is_ours(self._lock_file):
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    # Paths in the record and journal: relative to the set's folder when inside it (so a
    # moved folder keeps its record), absolute elsewhere

    def stored(self, path: Path) -> str:
        path = Path(os.path.abspath(path))
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def path(self, stored: str) -> Path:
        return self.root / stored  # an absolute stored path stays as it is

    # The record of the last set, kept in the lock file

    def read(self) -> dict | list | None:
        try:
            self._lock_file.seek(0)
            return json.loads(self._lock_file.read(_MAX_RECORD_BYTES) or "null")
        except (OSError, ValueError, AttributeError):
            return None

    def previous_set(self, finals: set[str]) -> list[dict]:
        """The previous set's files this build does not make, as recorded, that geoheat
        may remove: none when the record cannot prove them ours (one warning line)."""
        record = self.read()
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
                 and str(self.path(e["path"])) not in finals]
        if stale and record.get("folder") != folder_identity(self.root):
            self.warn(f"{self.primary}: the record of the previous set was made in another "
                      "folder (a copy of it?); its files this build does not make are left "
                      f"in place: {', '.join(sorted(Path(e['path']).name for e in stale))}")
            return []
        return stale

    def remove_stale(self, entry: dict) -> None:
        """Remove a file of the previous set if it is still the one geoheat wrote (same
        device, inode, size and time; not a link) and no other set lists it."""
        path = self.path(entry["path"])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as err:
            self.warn(f"{path}: left in place ({describe_os_error(err)})")
            return
        if not stat.S_ISREG(st.st_mode) or identity(st) != entry.get("file"):
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

    def write(self, record: dict) -> None:
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

