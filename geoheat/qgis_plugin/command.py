"""The geoheat command line the plugin runs, and what it makes of the command's output.

Plain Python, no QGIS: the plugin's logic that can be tested anywhere. The plugin
holds none of geoheat's own logic: it builds a `geoheat build` command line from the
algorithm's parameters, reads the lines the command writes on stderr (progress,
warnings, the one-line error) and the `--report` JSON it leaves.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Written beside this file by `geoheat qgis-plugin`: the version, the styles and the
# command of the geoheat that wrote the plugin.
WRITTEN_BY = HERE / "geoheat.json"
PROGRESS = "geoheat: progress: "
WARNING = "geoheat: warning: "
ERROR = "geoheat: error: "
INTERRUPTED = "geoheat: interrupted"
ZOOMS = ["auto"] + [str(z) for z in range(20)]
NORMALIZES = ["global", "local"]
BASEMAPS = ["none", "osm"]
DEFAULT_STYLES = ["hot", "strava"]


def written_by() -> dict:
    """What `geoheat qgis-plugin` recorded beside the plugin ({} for a plain copy)."""
    try:
        return json.loads(WRITTEN_BY.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def styles() -> list:
    """The styles of the geoheat that wrote the plugin."""
    return list(written_by().get("styles") or DEFAULT_STYLES)


def find_geoheat(setting: str = "", which=shutil.which, recorded=None) -> list:
    """The command to run, as a list: the provider's setting if it names a program,
    else `geoheat` on PATH, else the interpreter that wrote the plugin (`python -m
    geoheat`). LookupError saying what to do when none is found."""
    setting = (setting or "").strip()
    if setting:
        found = which(setting) or (setting if os.path.isfile(setting) else None)
        if found is None:
            raise LookupError(f"the geoheat command set in the Processing options, {setting}, "
                              "is not a program")
        return [found]
    on_path = which("geoheat")
    if on_path:
        return [on_path]
    recorded = written_by().get("command") if recorded is None else recorded
    if recorded and os.path.isfile(recorded[0]):
        return list(recorded)
    raise LookupError("the geoheat command was not found: install geoheat (pip install "
                      "geoheat), or set its path in Settings > Options > Processing > "
                      "Providers > geoheat")


def build_command(geoheat: list, inputs: list, output: str, report: str, zoom="auto",
                  sigma: float = 1.0, types: str = "", years: str = "", style: str = "hot",
                  normalize: str = "global", basemap: str = "none", mbtiles: str = "",
                  pmtiles: str = "") -> list:
    """`geoheat build` with the algorithm's parameters. The GeoTIFF and its .qml style
    are the output; with a basemap, a PNG of the heat over it is written beside them."""
    command = [*geoheat, "build", "--output", output, "--report", report,
               "--zoom", str(zoom), "--sigma", repr(float(sigma)), "--style", style,
               "--normalize", normalize, "--basemap", basemap]
    if basemap != "none":
        command.append("--png")
    if types.strip():
        command += ["--type", types.strip()]
    if years.strip():
        command += ["--year", years.strip()]
    if mbtiles:
        command += ["--mbtiles", mbtiles]
    if pmtiles:
        command += ["--pmtiles", pmtiles]
    return [*command, "--", *inputs]  # an input named like an option stays an input


def environment(base=None) -> dict:
    """The command's environment: progress as lines (stderr is a pipe, not a terminal);
    without QGIS's PYTHONHOME and PYTHONPATH (set for its own Python on Windows and
    macOS), which would send geoheat's Python to QGIS's libraries."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env["GEOHEAT_PROGRESS"] = "lines"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def start(command: list) -> subprocess.Popen:
    """The command running, stderr and stdout in one pipe of text lines; in a process
    group of its own, so Cancel can stop it and its workers as Ctrl-C would."""
    extra = {}
    if sys.platform == "win32":
        extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
    else:
        extra["start_new_session"] = True
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=environment(), text=True,
                            encoding="utf-8", errors="replace", bufsize=1, **extra)


def interrupt(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the command as Ctrl-C does (it removes its staged files; outputs it had not
    committed stay as they were), then for good if it has not ended within grace s."""
    if process.poll() is not None:
        return
    try:
        if sys.platform == "win32":
            process.terminate()
        else:
            import signal

            os.killpg(process.pid, signal.SIGINT)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        if sys.platform == "win32":
            process.kill()
        else:
            import signal

            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:  # it ended meanwhile
        process.wait()


def read_line(line: str):
    """One line of the command's output as (kind, value): ('progress', (label, done,
    total or None)), ('warning', text), ('error', text), ('interrupted', None), or
    ('info', line) for the summary and anything else."""
    line = line.rstrip("\r\n")
    if line.startswith(PROGRESS):
        label, _, counts = line[len(PROGRESS):].rpartition(" ")
        done, _, total = counts.partition("/")
        try:
            return "progress", (label, int(done), int(total) if total else None)
        except ValueError:
            return "info", line
    if line.startswith(WARNING):
        return "warning", line[len(WARNING):]
    if line.startswith(ERROR):
        return "error", line[len(ERROR):]
    if line == INTERRUPTED:
        return "interrupted", None
    return "info", line


def percent(done: int, total) -> float:
    """A stage's progress as a percentage (0 when its length is unknown)."""
    return 100.0 * min(done, total) / total if total else 0.0


def read_report(path: str) -> dict:
    """The build's --report document: activities drawn, zoom, outputs."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def failure(lines: list, returncode: int) -> str:
    """The message for a build that failed: its one-line error, or the last line it
    wrote (a crash's exception), or its exit code."""
    for line in reversed(lines):
        kind, value = read_line(line)
        if kind == "error":
            return value
    for line in reversed(lines):
        if line.strip():
            return f"geoheat stopped (exit code {returncode}): {line.strip()}"
    return f"geoheat stopped (exit code {returncode})"
