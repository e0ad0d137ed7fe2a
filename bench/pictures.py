"""What the picture scripts in bench/ share: a label on a panel, and a map drawn by QGIS."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from geoheat import font

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-qgis


def label(picture: np.ndarray, text: str, colour=(240, 240, 240), scale: int = 2,
          at: int = 8) -> None:
    """Write text on a (3, rows, cols) picture, top-left, in colour."""
    mask = font.text_mask(text, scale)
    h, w = mask.shape
    for band in range(3):
        picture[band, at:at + h, at:at + w][mask] = colour[band]


def draw_in_qgis(script: str, out: Path, *args) -> str:
    """Run a QGIS drawing script (argv: args) offscreen under the system Python, which
    must write out; its standard output. Exits the bench in one line if QGIS cannot."""
    run = subprocess.run([SYSTEM_PYTHON, "-c", script, *map(str, args)],
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                         capture_output=True, text=True)
    if run.returncode != 0 or not Path(out).is_file():
        sys.exit(f"QGIS could not draw the map: {run.stderr.strip()[-800:]}")
    return run.stdout
