"""One measured run of a command, for the bench scripts (standard library only)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple


class Run(NamedTuple):
    """What one process took: wall and CPU seconds (its own and its waited-for
    children's, from wait4), its peak RSS in MB, and its standard output."""

    seconds: float
    cpu: float
    peak_mb: float
    stdout: str


def run(argv: list[str], cwd: Path | None = None) -> Run:
    """Run a command to its end and measure it; exit the bench if it fails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{' '.join(map(str, argv[:6]))} ... failed: {err.read().strip()[-500:]}")
        return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read())
