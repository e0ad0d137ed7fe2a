"""A failed write in one line: its reason, the same whichever layer raised it, and
C libraries kept from printing their own words on the user's terminal meanwhile.
"""

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path


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


# GDAL's own words for a full disk ('TIFFAppendToStrip:Write error at scanline 0') do not
# say so: a failed write with less than this free on the volume is put down to that.
NEARLY_FULL_BYTES = 1 << 20


def failure_reason(err: BaseException, path: Path) -> str:
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
def c_stderr_kept_quiet() -> Iterator[None]:
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
