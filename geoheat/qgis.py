"""`geoheat qgis-plugin`: the QGIS plugin (geoheat/qgis_plugin/) written out as a folder
QGIS loads, DIR/geoheat_qgis/, or as a zip for QGIS's "Install from ZIP".

The plugin runs the `geoheat` command; beside its files goes geoheat.json, what it
needs to know of the geoheat that wrote it (version, styles, how to run it when
`geoheat` is not on QGIS's PATH). That file also marks the folder or zip as written
here: only such a folder or zip is ever replaced, file by file, atomically.
"""

import io
import json
import os
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from . import __version__
from .colormaps import STYLE_NAMES
from .errors import OutputError

PLUGIN = "geoheat_qgis"  # the folder's name in QGIS's python/plugins
FILES = ("__init__.py", "plugin.py", "provider.py", "algorithm.py", "command.py",
         "metadata.txt")
MARKER = "geoheat.json"
WRITTEN_BY = "geoheat qgis-plugin"


def plugin_files() -> dict[str, bytes]:
    """The plugin's files by name: the package's own, the version put in metadata.txt,
    and geoheat.json."""
    package = resources.files("geoheat") / "qgis_plugin"
    files = {name: (package / name).read_bytes() for name in FILES}
    metadata = files["metadata.txt"].decode("utf-8").replace("\nversion=0\n",
                                                             f"\nversion={__version__}\n")
    files["metadata.txt"] = metadata.encode("utf-8")
    record = {"written_by": WRITTEN_BY, "version": __version__, "styles": list(STYLE_NAMES),
              "command": [sys.executable, "-m", "geoheat"]}
    files[MARKER] = (json.dumps(record, indent=1) + "\n").encode("utf-8")
    return files


def _is_ours(marker: bytes) -> bool:
    try:
        return json.loads(marker.decode("utf-8")).get("written_by") == WRITTEN_BY
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


def write_plugin(folder: Path, as_zip: bool = False) -> Path:
    """The plugin written into folder (which must exist): folder/geoheat_qgis/, or
    folder/geoheat_qgis.zip. OutputError if that name is taken by something this
    command did not write."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"{folder}: no such folder")
    files = plugin_files()
    return _write_zip(folder, files) if as_zip else _write_folder(folder, files)


def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    target = folder / PLUGIN
    if os.path.lexists(target):
        marker = target / MARKER
        if target.is_symlink() or not target.is_dir() or marker.is_symlink() \
                or not marker.is_file() or not _is_ours(marker.read_bytes()):
            raise OutputError(f"{target}: exists and was not written by geoheat qgis-plugin; "
                              "move it away or name another folder")
        for name, data in files.items():  # an update: each file replaced whole
            _replace(target / name, data)
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN}-", dir=folder))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        os.chmod(staging, 0o755)  # mkdtemp's folder is private; a plugin folder is not
        os.rename(staging, target)
    except BaseException:
        for name in files:
            (staging / name).unlink(missing_ok=True)
        staging.rmdir()
        raise
    return target


def _write_zip(folder: Path, files: dict[str, bytes]) -> Path:
    target = folder / f"{PLUGIN}.zip"
    if os.path.lexists(target):
        try:
            with zipfile.ZipFile(target) as old:
                ours = not target.is_symlink() and _is_ours(old.read(f"{PLUGIN}/{MARKER}"))
        except (OSError, KeyError, zipfile.BadZipFile):
            ours = False
        if not ours:
            raise OutputError(f"{target}: exists and was not written by geoheat qgis-plugin; "
                              "move it away or name another file")
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(f"{PLUGIN}/{name}", content)
    _replace(target, data.getvalue())
    return target


def _replace(path: Path, data: bytes) -> None:
    """path holds data, all or nothing (a temporary file beside it, renamed over it)."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
