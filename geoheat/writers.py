"""Writers for geoheat's outputs: rasters through rasterio (GDAL), CSV through numpy.

Each writer writes to the path it is given (geoheat.outputs stages and commits the
set); side files (.pgw, .aux.xml) are written beside it.
"""

import contextlib
import os
import sqlite3
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from . import tiles
from .errors import OutputError
from .projection import unproject
from .tiles import Grid, TileKey

# Side files only where a writer asks for them (the PNG's .aux.xml); GDAL's block cache
# held small, so memory follows geoheat's sparse tiles, not GDAL's default 5% of RAM.
_GDAL_LIMITS = {"GDAL_PAM_ENABLED": "NO", "GDAL_CACHEMAX": 128, "CPL_LOG": os.devnull}


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


def write_tiled_cog(
    path: Path,
    blocks: Mapping[TileKey, np.ndarray],
    grid: Grid,
    *,
    count: int,
    dtype: str,
    nodata: float | None = 0,
    tags: Mapping[str, object] | None = None,
    descriptions: Sequence[str] = (),
) -> None:
    """A Cloud Optimized GeoTIFF of sparse tiles ((256, 256) or (count, 256, 256) blocks).

    The tiles are written one by one into a sparse GeoTIFF (tiles without data are
    not stored), which GDAL then copies as a COG: EPSG:3857 on the grid, 256-pixel
    blocks (the XYZ tiles), DEFLATE with a predictor, averaged overviews. Memory
    follows the data, not the grid. Four uint8 bands are RGBA.
    """
    size = tiles.TILE_SIZE
    sparse = path.with_name(f".{path.stem}.sparse.tif")
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": count,
        "dtype": dtype, "crs": "EPSG:3857", "transform": tiles.grid_transform(grid),
        "nodata": nodata, "tiled": True, "blockxsize": size, "blockysize": size,
        "sparse_ok": True, "bigtiff": "if_safer",
    }
    if count == 4:
        profile.update(photometric="rgb", alpha="yes")
    try:
        with rasterio.Env(**_GDAL_LIMITS):
            with rasterio.open(sparse, "w", **profile) as dst:
                for key, block in sorted(blocks.items()):
                    row, col = tiles.tile_window(key, grid)
                    dst.write(block.reshape(count, size, size),
                              window=Window(col, row, size, size))
                for index, text in enumerate(descriptions, start=1):
                    dst.set_band_description(index, text)
                if tags:
                    dst.update_tags(**{k: str(v) for k, v in tags.items()})
            rasterio.shutil.copy(
                sparse, path, driver="COG", blocksize=size, compress="deflate",
                predictor="yes", resampling="average", overview_resampling="average",
                sparse_ok="true", bigtiff="if_safer")
    finally:
        sparse.unlink(missing_ok=True)


def write_geotiff(
    path: Path, heat: Mapping[TileKey, np.ndarray], grid: Grid,
    tags: Mapping[str, object] | None = None,
) -> None:
    """Sparse heat tiles as a float32 COG on the grid: EPSG:3857, nodata 0, band 'heat'."""
    write_tiled_cog(path, heat, grid, count=1, dtype="float32", nodata=0, tags=tags,
                    descriptions=["heat"])


def write_png(path: Path, rgb: np.ndarray, grid: Grid | None = None) -> None:
    """A (3 or 4, h, w) uint8 image as a PNG; with a grid, also a .pgw world file and
    a .aux.xml holding the CRS, so GIS software places it."""
    count, height, width = rgb.shape
    profile = {"driver": "PNG", "width": width, "height": height, "count": count,
               "dtype": "uint8"}
    if grid is not None:
        profile.update(crs="EPSG:3857", transform=tiles.grid_transform(grid), worldfile="yes")
    with warnings.catch_warnings():
        # Without a grid it is a plain picture: rasterio's warning is noise then.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        pam = "YES" if grid is not None else "NO"
        with rasterio.Env(GDAL_PAM_ENABLED=pam), rasterio.open(path, "w", **profile) as dst:
            dst.write(rgb)
    if grid is not None:
        # GDAL names the world file .wld; .pgw is the PNG's own extension.
        os.replace(path.with_suffix(".wld"), path.with_suffix(".pgw"))


def write_csv(
    path: Path, heat: Mapping[TileKey, np.ndarray], grid: Grid, threshold: float = 0.1
) -> int:
    """latitude,longitude,intensity at the centres of pixels hotter than threshold, row by
    row from the top; the number of rows."""
    rows, cols, values = [np.empty(0, dtype=np.int64)] * 2 + [np.empty(0, dtype=np.float32)]
    parts = []
    for key, block in heat.items():
        r, c = np.nonzero(block > threshold)
        row_off, col_off = tiles.tile_window(key, grid)
        parts.append((r + row_off, c + col_off, block[r, c]))
    if parts:
        rows, cols, values = (np.concatenate(column) for column in zip(*parts))
    order = np.lexsort((cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    lonlat = unproject(tiles.pixel_centres_xy(rows, cols, grid))
    table = np.column_stack([lonlat[:, 1], lonlat[:, 0], values])
    np.savetxt(
        path,
        table,
        fmt=("%.6f", "%.6f", "%.4f"),
        delimiter=",",
        header="latitude,longitude,intensity",
        comments="",
    )
    return len(table)


def qml_style(rgba_lut: np.ndarray, stops: int = 16) -> str:
    """A QGIS style (.qml) drawing band 1's heat in [0, 1] through a (256, 4) lookup table."""
    qgis = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
    pipe = ET.SubElement(qgis, "pipe")
    renderer = ET.SubElement(pipe, "rasterrenderer", type="singlebandpseudocolor", band="1",
                             opacity="1", alphaBand="-1", classificationMin="0",
                             classificationMax="1", nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader",
                           colorRampType="INTERPOLATED", classificationMode="1", clip="0",
                           minimumValue="0", maximumValue="1", labelPrecision="2")
    positions = np.linspace(0, 1, stops + 1)
    indices = np.rint(positions * 255).astype(int)

    def rgba(i):
        return ",".join(str(int(v)) for v in rgba_lut[i])

    ramp = ET.SubElement(shader, "colorramp", type="gradient", name="[source]")
    options = ET.SubElement(ramp, "Option", type="Map")
    # QGIS writes gradient stops as "position;r,g,b,a" joined by ":".
    inner = ":".join(f"{p:g};{rgba(i)}" for p, i in zip(positions[1:-1], indices[1:-1]))
    for key, value in (("color1", rgba(indices[0])), ("color2", rgba(indices[-1])),
                       ("discrete", "0"), ("rampType", "gradient"), ("stops", inner)):
        ET.SubElement(options, "Option", name=key, type="QString", value=value)
    for position, i in zip(positions, indices):
        r, g, b, a = (int(v) for v in rgba_lut[i])
        ET.SubElement(shader, "item", value=f"{position:g}", label=f"{position:g}",
                      color=f"#{r:02x}{g:02x}{b:02x}", alpha=str(a))
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "resampler", zoomedInResampler="bilinear", maxOversampling="2")
    ET.indent(qgis)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(
        qgis, encoding="unicode") + "\n"


def write_qml(path: Path, rgba_lut: np.ndarray) -> None:
    """The QGIS style file that QGIS loads with the GeoTIFF of the same name."""
    path.write_text(qml_style(rgba_lut), encoding="utf-8")


def write_mbtiles(
    path: Path,
    rgba: Mapping[TileKey, np.ndarray],
    grid: Grid,
    min_zoom: int,
    metadata: Mapping[str, str],
) -> None:
    """Sparse (4, 256, 256) RGBA tiles as MBTiles of PNG tiles, grid.zoom down to min_zoom.

    The grid's own pixels are the top level's tiles (no resampling); lower levels
    average them. Tiles with no heat are not stored. metadata adds to (or overrides)
    GDAL's name, format, bounds, minzoom and maxzoom rows.
    """
    profile = {
        "driver": "MBTiles",
        "width": grid.width,
        "height": grid.height,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "transform": tiles.grid_transform(grid),
        "tile_format": "PNG",
        "blocksize": tiles.TILE_SIZE,
        "name": metadata.get("name", "geoheat"),
        "type": metadata.get("type", "overlay"),
        "description": metadata.get("description", ""),
        "zoom_level_strategy": "auto",
    }
    factors = [2**k for k in range(1, grid.zoom - min_zoom + 1)]
    size = tiles.TILE_SIZE
    with rasterio.Env(**_GDAL_LIMITS), rasterio.open(path, "w", **profile) as dst:
        for key, block in sorted(rgba.items()):
            row, col = tiles.tile_window(key, grid)
            dst.write(block, window=Window(col, row, size, size))
        if factors:
            dst.build_overviews(factors, Resampling.average)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("DELETE FROM metadata WHERE name = ?", [(k,) for k in metadata])
        db.executemany("INSERT INTO metadata (name, value) VALUES (?, ?)", metadata.items())
