"""Writers for geoheat's outputs: GeoTIFF and PNG through rasterio, CSV through numpy.

Each writer writes to the path it is given; `staged` hands out temporary paths and
renames them into place only when every output is complete, so a failed or
interrupted run leaves no half-written file and no mix of old and new outputs.
"""

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from . import heat as heat_steps
from . import tiles
from .errors import OutputError
from .tiles import Grid

# GDAL must not leave .aux.xml side files next to temporary names.
_GDAL_ENV = {"GDAL_PAM_ENABLED": "NO"}


def check_writable_folder(path: Path) -> None:
    """Raise OutputError unless path's folder exists and accepts a new file."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"{path}: output folder {folder} {what}")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".geoheat-probe-"):
            pass
    except OSError as err:
        raise OutputError(f"{path}: cannot write in {folder} ({err.strerror})") from None


@contextlib.contextmanager
def staged(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary paths beside `paths`, renamed onto them together when the block succeeds."""
    temps = [p.with_name(f".{p.stem}.{os.getpid()}.tmp{p.suffix}") for p in paths]
    try:
        yield temps
        for temp, final in zip(temps, paths):
            os.replace(temp, final)
    except OSError as err:
        raise OutputError(f"{err.filename or paths[0]}: cannot write ({err.strerror})") from None
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def overview_factors(width: int, height: int, smallest: int = tiles.TILE_SIZE) -> list[int]:
    """Power-of-two overview factors until the image's longer side fits one tile."""
    factors, factor = [], 2
    while max(width, height) / (factor // 2) > smallest:
        factors.append(factor)
        factor *= 2
    return factors


def write_geotiff(
    path: Path, heat: np.ndarray, grid: Grid, tags: Mapping[str, object] | None = None
) -> None:
    """Heat as a float32 GeoTIFF on the grid: EPSG:3857, nodata 0, tiled, DEFLATE, overviews."""
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:3857",
        "transform": tiles.grid_transform(grid),
        "nodata": 0,
        "tiled": True,
        "blockxsize": tiles.TILE_SIZE,
        "blockysize": tiles.TILE_SIZE,
        "compress": "deflate",
        "predictor": 3,  # floating-point predictor: smaller files for smooth heat
    }
    with rasterio.Env(**_GDAL_ENV), rasterio.open(path, "w", **profile) as dst:
        dst.write(heat.astype(np.float32, copy=False), 1)
        dst.set_band_description(1, "heat")
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
        factors = overview_factors(grid.width, grid.height)
        if factors:
            dst.build_overviews(factors, Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")


def write_png(path: Path, rgb: np.ndarray) -> None:
    """A (3, h, w) uint8 image as a PNG."""
    _, height, width = rgb.shape
    profile = {"driver": "PNG", "width": width, "height": height, "count": 3, "dtype": "uint8"}
    with warnings.catch_warnings():
        # A plain picture: no georeferencing is intended, so rasterio's warning is noise.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(**_GDAL_ENV), rasterio.open(path, "w", **profile) as dst:
            dst.write(rgb)


def write_csv(path: Path, heat: np.ndarray, grid: Grid, threshold: float = 0.1) -> int:
    """latitude,longitude,intensity at the centres of pixels hotter than threshold; row count."""
    rows, cols = np.nonzero(heat > threshold)
    lonlat = heat_steps.pixel_centres(rows, cols, grid)
    table = np.column_stack([lonlat[:, 1], lonlat[:, 0], heat[rows, cols]])
    np.savetxt(
        path,
        table,
        fmt=("%.6f", "%.6f", "%.4f"),
        delimiter=",",
        header="latitude,longitude,intensity",
        comments="",
    )
    return len(table)
