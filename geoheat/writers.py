"""Writers for geoheat's outputs: rasters through rasterio (GDAL), CSV through numpy
(the tile archives: tilewriters.py).

Each writer writes to the path it is given (geoheat.outputs stages and commits the
set); side files (.pgw, .aux.xml) are written beside it.
"""

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
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


# GDAL's names of the dtypes geoheat writes, for VRT files.
_VRT_TYPES = {"uint8": "Byte", "uint32": "UInt32", "float32": "Float32"}
_RGBA = ("Red", "Green", "Blue", "Alpha")
# The COG declares the XYZ tile matrix set its grid lies on (GDAL writes the TIFF tags of
# the TILING_SCHEME metadata domain: NAME=GoogleMapsCompatible, ZOOM_LEVEL): viewers then
# know its blocks and overviews are web map tiles. The grid is already aligned, so GDAL
# copies the pixels as they are (tested).
TILING_SCHEME = "GoogleMapsCompatible"
# GDAL's COG copy deflates blocks on this many threads (NUM_THREADS); it still writes
# them in block order, so the file is the same byte for byte as on one (tested).
COMPRESS_THREADS = "ALL_CPUS"
# The copy reads the uncompressed sparse GeoTIFFs by GDAL's direct reads, not through
# its block cache: the same pixels, and an RGBA COG's copy 25% less CPU (a city at
# z16: 3.9 -> 2.9 s; the cache split each 4-band block into bands and back).
COPY_READING = {"GTIFF_DIRECT_IO": "YES"}


def write_sparse_tiff(
    path: Path,
    blocks: Iterable[tuple[int, int, np.ndarray]],
    shape: tuple[int, int],
    transform,
    *,
    count: int,
    dtype: str,
    nodata: float | None = 0,
) -> None:
    """A tiled GeoTIFF of `shape` (height, width) in EPSG:3857 holding (row, col, block)
    pieces ((h, w) or (count, h, w)); blocks never written are not stored (sparse)."""
    size = tiles.TILE_SIZE
    height, width = shape
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": count,
        "dtype": dtype, "crs": "EPSG:3857", "transform": transform,
        "nodata": nodata, "tiled": True, "blockxsize": size, "blockysize": size,
        "sparse_ok": True, "bigtiff": "if_safer",
    }
    if count == 4:
        profile.update(photometric="rgb", alpha="yes")
    with rasterio.Env(**_GDAL_LIMITS), rasterio.open(path, "w", **profile) as dst:
        for row, col, block in blocks:
            h, w = block.shape[-2:]
            dst.write(block.reshape(count, h, w), window=Window(col, row, w, h))


def write_overview(path: Path, level_blocks: Mapping[TileKey, np.ndarray], grid: Grid,
                   low: Grid, *, count: int, dtype: str, nodata: float | None = 0) -> None:
    """One overview of a COG on `grid`: a lower level's sparse tiles (on its grid `low`)
    cropped to the grid's extent, as a sparse GeoTIFF for write_tiled_cog(overviews=...)."""
    from .pyramid import crop, overview_window

    window = overview_window(grid, low)
    transform = tiles.grid_transform(low) @ Affine.translation(window.col, window.row)
    write_sparse_tiff(path, crop(level_blocks, low, window), (window.height, window.width),
                      transform, count=count, dtype=dtype, nodata=nodata)


def _vrt(base: Path, overviews: Sequence[Path], grid: Grid, *, count: int, dtype: str,
         nodata: float | None, tags: Mapping[str, object] | None,
         descriptions: Sequence[str]) -> str:
    """A VRT of the base GeoTIFF whose bands' overviews are the given files."""
    vrt = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(vrt, "SRS").text = "EPSG:3857"
    ET.SubElement(vrt, "GeoTransform").text = ", ".join(
        repr(v) for v in tiles.grid_transform(grid).to_gdal())
    if tags:
        metadata = ET.SubElement(vrt, "Metadata")
        for key, value in tags.items():
            ET.SubElement(metadata, "MDI", key=key).text = str(value)
    for band in range(1, count + 1):
        element = ET.SubElement(vrt, "VRTRasterBand", dataType=_VRT_TYPES[dtype],
                                band=str(band))
        if band <= len(descriptions):
            ET.SubElement(element, "Description").text = descriptions[band - 1]
        if nodata is not None:
            ET.SubElement(element, "NoDataValue").text = repr(nodata)
        if count == 4:
            ET.SubElement(element, "ColorInterp").text = _RGBA[band - 1]
        source = ET.SubElement(element, "SimpleSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(base)
        ET.SubElement(source, "SourceBand").text = str(band)
        for overview in overviews:
            over = ET.SubElement(element, "Overview")
            ET.SubElement(over, "SourceFilename", relativeToVRT="0").text = str(overview)
            ET.SubElement(over, "SourceBand").text = str(band)
    return ET.tostring(vrt, encoding="unicode")


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
    overviews: Sequence[Path] | None = None,
) -> None:
    """A Cloud Optimized GeoTIFF of sparse tiles ((256, 256) or (count, 256, 256) blocks).

    The tiles are written one by one into a sparse GeoTIFF (tiles without data are
    not stored), which GDAL then copies as a COG: EPSG:3857 on the grid, 256-pixel
    blocks (the XYZ tiles), DEFLATE, the GoogleMapsCompatible tiling
    scheme declared. overviews: GeoTIFFs of factors 2, 4, ... (write_overview: each
    computed from its own zoom's data), taken as they are; None: GDAL averages the
    grid's pixels. Memory follows the data, not the grid: one block read at a time
    (sorting the items held every dense block of a CellTiles level at once, ~330 MB at
    zoom 16 on a city). Four uint8 bands are RGBA.
    """
    size = tiles.TILE_SIZE
    # Short names in a folder of their own: an output's name may be as long as its file
    # system allows, and a name built on it would not fit.
    work = Path(tempfile.mkdtemp(prefix=".cog-", dir=path.parent))
    sparse, vrt = work / "sparse.tif", work / "levels.vrt"
    # No predictor: on heat (mostly zeros and sharp lines) differencing made every COG
    # larger (a city at zoom 16: heat 33.7 -> 30.8 MB, RGBA 16.9 -> 14.0, counts 3.0 ->
    # 2.6) and the heat's copy twice as slow (3.8 -> 2.0 s of CPU).
    copy = {"driver": "COG", "blocksize": size, "compress": "deflate", "predictor": "no",
            "sparse_ok": "true", "bigtiff": "if_safer", "tiling_scheme": TILING_SCHEME,
            "num_threads": COMPRESS_THREADS}
    try:
        write_sparse_tiff(
            sparse, ((*tiles.tile_window(key, grid), blocks[key]) for key in sorted(blocks)),
            (grid.height, grid.width), tiles.grid_transform(grid), count=count, dtype=dtype,
            nodata=nodata)
        vrt.write_text(_vrt(sparse, overviews or (), grid, count=count, dtype=dtype,
                            nodata=nodata, tags=tags, descriptions=descriptions),
                       encoding="utf-8")
        if overviews is None:
            copy.update(resampling="average", overview_resampling="average")
        else:
            copy.update(overviews="force_use_existing")
        with rasterio.Env(**_GDAL_LIMITS, **COPY_READING):
            rasterio.shutil.copy(vrt, path, **copy)
    finally:
        sparse.unlink(missing_ok=True)
        vrt.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()


def write_geotiff(
    path: Path, heat: Mapping[TileKey, np.ndarray], grid: Grid,
    tags: Mapping[str, object] | None = None, overviews: Sequence[Path] | None = None,
) -> None:
    """Sparse heat tiles as a float32 COG on the grid: EPSG:3857, nodata 0, band 'heat';
    overviews as write_tiled_cog takes them."""
    write_tiled_cog(path, heat, grid, count=1, dtype="float32", nodata=0, tags=tags,
                    descriptions=["heat"], overviews=overviews)


def side_files(path: Path) -> list[Path]:
    """An output and the files written beside it: a PNG's world file and .aux.xml, the
    journal SQLite keeps while it writes an MBTiles."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return [path, path.with_suffix(".pgw"), path.with_name(path.name + ".aux.xml")]
    if suffix == ".mbtiles":
        return [path, path.with_name(path.name + "-journal")]
    return [path]


def written_files(outputs: Iterable[Path], exists: Callable[[Path], bool]) -> list[Path]:
    """Every file a build wrote: each output, then the side files (side_files) that
    `exists` finds where it was written (a PNG's world file and .aux.xml; not the
    MBTiles journal, gone once written), in the outputs' order."""
    return [file for output in outputs for file in side_files(output)
            if file == Path(output) or exists(file)]


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


# The CSV's column types, for GDAL (and QGIS through it): numbers, and the point they make.
CSVT = '"CoordY","CoordX","Real"\n'


def write_csvt(path: Path) -> None:
    """The .csvt beside the CSV: latitude and longitude are the point's Y and X, intensity
    a real number (without it GDAL reads three strings and no geometry)."""
    path.write_text(CSVT, encoding="ascii")


def qml_style(rgba_lut: np.ndarray, stops: int = 16,
              items: Sequence[tuple[float, str]] | None = None) -> str:
    """A QGIS style (.qml) drawing band 1's heat in [0, 1] through a (256, 4) lookup table.

    items: the ramp's (heat, label) items, e.g. legend.ramp_items: each count at the heat
    its pixels are drawn with, labelled in passes, listed one by one in QGIS's layer
    panel and print layouts (a discrete legend); default: stops + 1 items labelled with
    their heat. QGIS interpolates the colours between items; the gradient behind them
    (the layer's source ramp) has the table's colours at every stop.
    """
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
    if items is None:
        items = [(float(p), f"{p:g}") for p in positions]
    for heat, label in items:
        r, g, b, a = (int(v) for v in rgba_lut[int(np.clip(np.rint(heat * 255), 0, 255))])
        ET.SubElement(shader, "item", value=f"{heat:.6g}", label=label,
                      color=f"#{r:02x}{g:02x}{b:02x}", alpha=str(a))
    # QGIS 3.18+: list the items (not one continuous ramp named by its ends).
    ET.SubElement(shader, "rampLegendSettings", useContinuousLegend="0", prefix="", suffix="",
                  minimumLabel="", maximumLabel="", direction="0", orientation="2")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "resampler", zoomedInResampler="bilinear", maxOversampling="2")
    ET.indent(qgis)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(
        qgis, encoding="unicode") + "\n"


def write_qml(path: Path, rgba_lut: np.ndarray,
              items: Sequence[tuple[float, str]] | None = None) -> None:
    """The QGIS style file that QGIS loads with the GeoTIFF of the same name."""
    path.write_text(qml_style(rgba_lut, items=items), encoding="utf-8")
