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
- The lock file records the set (outputrecord): the folder's identity and each file's
  identity as written (device, inode, size, modification time). A file of the previous
  set is removed only when it is still the very file geoheat wrote there, and no other
  set's record lists it; otherwise it is left, with one warning line. A copied folder's
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
from .outputerrors import c_stderr_kept_quiet, describe_os_error, failure_reason
from .outputrecord import LOCK_SUFFIX, RECORD_VERSION, SetRecord, folder_identity, identity

JOURNAL = "journal.json"
# What geoheat adds to a set's name: `.geoheat-stage.NAME.` and mkdtemp's 8 characters
# (letters, digits, _) for a staging folder, `.NAME.geoheat-lock` for the lock.
_STAGE_EXTRA = len(".geoheat-stage.") + 1 + 8
_STAGE_RANDOM = re.compile(r"[A-Za-z0-9_]+")  # no dot: not a set named NAME.x


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
        self.record = SetRecord(self.lock_path, self.primary, self.root, self.warn)
        self._stages: dict[Path, Path] = {}
        self._journal_written = False  # from then on the staging is the next build's to finish

    # The lock, and finishing what an earlier build left

    def __enter__(self) -> "OutputSet":
        self.record.hold()
        self._recover()
        return self

    def __exit__(self, *exc) -> None:
        if not self._journal_written:
            for stage in self._stages.values():
                shutil.rmtree(stage, ignore_errors=True)
        self._stages.clear()
        self.record.release()

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
                raise OutputError(f"{path}: cannot write ({failure_reason(err, path)})") from None
            self._stages[path.parent] = stage
        return stage / path.name

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[Path]:
        """Write one output: yields its temporary path; any failure becomes one
        OutputError line naming the output."""
        try:
            with c_stderr_kept_quiet():
                yield self.temp(path)
        except OutputError:
            raise
        except (OSError, MemoryError) as err:
            raise OutputError(f"{path}: cannot write ({failure_reason(err, path)})") from None
        except Exception as err:  # GDAL (rasterio) and sqlite3 raise their own types
            if type(err).__module__.split(".")[0] not in ("rasterio", "sqlite3"):
                raise
            raise OutputError(f"{path}: cannot write ({failure_reason(err, path)})") from None

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
            made = [{"path": self.record.stored(final), "file": identity(os.lstat(written))}
                    for written, final in staged]
            folder = folder_identity(self.root)
            if folder is None:
                raise FileNotFoundError(errno.ENOENT, "the output folder is gone")
        except (FileNotFoundError, NotADirectoryError) as err:
            raise OutputError(f"{self.primary}: cannot write "
                              f"({failure_reason(err, self.primary)}); "
                              "nothing was changed") from None
        finals = {str(final) for _, final in staged}
        journal = {
            "geoheat": RECORD_VERSION, "folder": folder,
            "moves": [[self.record.stored(written), self.record.stored(final)]
                      for written, final in staged],
            "remove": [entry for entry in self.record.previous_set(finals)],
            "record": {"geoheat": RECORD_VERSION, "folder": folder, "outputs": made},
            "stages": [self.record.stored(s) for s in self._stages.values()]}
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
                or journal.get("folder") != folder_identity(self.root):
            self.warn(f"{self.primary}: an unfinished commit ({stage.name}) was not made in "
                      "this folder (a copy of it?) or by this geoheat; left undone")
            return
        stages = [self.record.path(s) for s in journal["stages"]]
        for source, final in journal["moves"]:
            source, final = self.record.path(source), self.record.path(final)
            # Only from a staging folder of this journal into the folder holding it.
            if source.parent in stages and source.parent.parent == final.parent \
                    and os.path.lexists(source):
                os.replace(source, final)
        for entry in journal["remove"]:
            self.record.remove_stale(entry)
        self.record.write(journal["record"])
        for folder in stages:
            if _is_stage_name(folder.name, self.tag) and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)

