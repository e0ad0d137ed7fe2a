"""The kinds of file a build writes, as data: one `OutputKind` each, in `KINDS`.

Each kind says the suffixes --output may name it by, its path rule (named after
--output and the options), how it is written (`way`: a file of the output's zoom, a
Cloud-Optimised GeoTIFF with overviews, a tile archive, or by its own step), its
raster's dtype, bands and nodata, the pyramid levels it needs, and its writer.
options.BuildOptions.outputs (output_paths), the pyramid's zooms (write_outputs) and
the writing (write_outputs.write_outputs) all read this table.

Only the standard library is imported here (BuildOptions names its outputs with it);
the writers are imported when they write.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .errors import OutputError

# How a kind is written (OutputKind.way).
FILE = "file"  # one file of the output's zoom (write(temp, made))
COG = "cog"  # a COG: blocks(level, made) at the output's zoom and as each overview
ARCHIVE = "archive"  # a tile archive: write(temp, made, metadata) of the tiles made
OWN = "own"  # written by its own step (the explorer's GeoPackage, the --report JSON)

# The pyramid levels a kind needs (OutputKind.levels).
OVERVIEWS = "overviews"  # below the output's zoom, down to one 256-pixel block
TILES = "tiles"  # --min-zoom to --max-zoom


class Naming(NamedTuple):
    """What a path rule names from: the options, --output, its stem and its kind."""

    options: object  # BuildOptions
    named: Path
    stem: Path
    kind: str


class OutputKind(NamedTuple):
    """One kind of file a build writes (see the module's docstring)."""

    name: str  # the key in BuildOptions.outputs
    path: Callable[[Naming], Path | None]  # None: not made by this build
    way: str  # FILE, COG, ARCHIVE or OWN
    write: Callable | None = None  # see `way` (None: OWN)
    suffixes: tuple[str, ...] = ()  # what --output may end in to name this kind
    levels: str | None = None  # OVERVIEWS, TILES or None
    dtype: str | None = None  # a COG's
    bands: int = 0
    nodata: float | None = None
    blocks: Callable | None = None  # a COG's blocks at a pyramid level: blocks(level, made)
    from_heat: bool = False  # a COG made from the heat (not the counts alone)
    coloured: bool = False  # a COG made in the colormap's colours


def _heat(n: Naming) -> Path:
    """The stem the heat GeoTIFF and its QGIS style share: QGIS styles any raster NAME.*
    with NAME.qml, so the PNG and the heat GeoTIFF never share a name, and each shows its
    own colours (the GeoTIFF its ramp)."""
    return n.named.with_suffix("") if n.kind == "tif" else n.stem.with_name(f"{n.stem.name}-heat")


def _png_path(n: Naming) -> Path | None:
    if n.options.png or (n.options.png is None and n.kind == "png"):
        return n.named if n.kind == "png" else n.stem.with_name(f"{n.stem.name}-map.png")
    return None


def _tif_path(n: Naming) -> Path | None:
    if n.kind not in ("png", "tif"):  # a build named by its tiles makes just the tiles
        return None
    return n.named if n.kind == "tif" else _heat(n).with_suffix(".tif")


def _qml_path(n: Naming) -> Path | None:
    return _heat(n).with_suffix(".qml") if n.kind in ("png", "tif") else None


def _csvt_path(n: Naming) -> Path | None:
    return n.stem.with_suffix(".csvt") if n.options.csv else None  # the CSV's column types


def _csv_path(n: Naming) -> Path | None:
    return n.stem.with_suffix(".csv") if n.options.csv else None


def _rgba_path(n: Naming) -> Path | None:
    return n.stem.with_name(f"{n.stem.name}-rgba.tif") if n.options.rgba_tif else None


def _counts_path(n: Naming) -> Path | None:
    return n.stem.with_name(f"{n.stem.name}-counts.tif") if n.options.counts else None


def _archive_path(archive: str, what: str):
    def path(n: Naming) -> Path | None:
        path = getattr(n.options, archive)
        if path is None and n.kind == archive:
            path = n.named
        if path is not None and path.suffix.lower() != f".{archive}":
            raise OutputError(f"{path}: the {what} file name must end in .{archive}")
        return path

    return path


def _explorer_path(n: Naming) -> Path | None:
    path = n.options.explorer
    if path is not None and path.suffix.lower() != ".gpkg":
        raise OutputError(f"{path}: the explorer file name must end in .gpkg")
    return path


def _report_path(n: Naming) -> Path | None:
    return n.options.report


# --- writers -------------------------------------------------------------------------

def _write_png(temp: Path, made) -> None:
    from .writers import write_png

    write_png(temp, made.picture, made.grid)


def _write_qml(temp: Path, made) -> None:
    from .legend import ramp_items
    from .writers import write_qml

    write_qml(temp, made.rgba_lut, ramp_items(made.counts, made.options))


def _write_csvt(temp: Path, made) -> None:
    from .writers import write_csvt

    write_csvt(temp)


def _write_csv(temp: Path, made) -> None:
    from .writers import write_csv

    write_csv(temp, made.heat, made.grid, made.options.csv_min)


def _write_heat_cog(temp: Path, made, kind: "OutputKind", overviews: list[Path]) -> None:
    from .writers import write_geotiff

    write_geotiff(temp, made.heat, made.grid, made.tags, overviews=overviews)


def _write_tiled_cog(temp: Path, made, kind: "OutputKind", overviews: list[Path]) -> None:
    from .writers import write_tiled_cog

    what = "passes" if made.options.mode == "lines" else "trackpoints"
    names = {"rgba": [], "counts": [what]}[kind.name]  # the bands' descriptions
    write_tiled_cog(temp, kind.blocks(made.top, made), made.grid, count=kind.bands,
                    dtype=kind.dtype, nodata=kind.nodata, tags=made.tags, descriptions=names,
                    overviews=overviews)


def _write_mbtiles(temp: Path, made, metadata: dict) -> None:
    from .tilewriters import write_mbtiles

    write_mbtiles(temp, made.pngs, metadata)


def _write_pmtiles(temp: Path, made, metadata: dict) -> None:
    from .tilewriters import write_pmtiles

    write_pmtiles(temp, made.pngs, metadata, made.lonlat, made.centre)


def _heat_blocks(level, made):
    return level.heat


def _rgba_blocks(level, made):
    return made.coloured(level.heat)


def _count_blocks(level, made):
    return level.counts


# In the order BuildOptions.outputs lists them (and the build's summary).
KINDS = (
    OutputKind("png", _png_path, FILE, _write_png, suffixes=(".png",)),
    OutputKind("tif", _tif_path, COG, _write_heat_cog, suffixes=(".tif", ".tiff"),
               levels=OVERVIEWS, dtype="float32", bands=1, nodata=0, blocks=_heat_blocks,
               from_heat=True),
    OutputKind("qml", _qml_path, FILE, _write_qml),
    OutputKind("csvt", _csvt_path, FILE, _write_csvt),
    OutputKind("csv", _csv_path, FILE, _write_csv),
    OutputKind("rgba", _rgba_path, COG, _write_tiled_cog, levels=OVERVIEWS, dtype="uint8",
               bands=4, nodata=None, blocks=_rgba_blocks, from_heat=True, coloured=True),
    OutputKind("counts", _counts_path, COG, _write_tiled_cog, levels=OVERVIEWS,
               dtype="uint32", bands=1, nodata=0, blocks=_count_blocks),
    OutputKind("mbtiles", _archive_path("mbtiles", "MBTiles"), ARCHIVE, _write_mbtiles,
               suffixes=(".mbtiles",), levels=TILES),
    OutputKind("pmtiles", _archive_path("pmtiles", "PMTiles"), ARCHIVE, _write_pmtiles,
               suffixes=(".pmtiles",), levels=TILES),
    OutputKind("explorer", _explorer_path, OWN),
    OutputKind("report", _report_path, OWN),
)
BY_NAME = {kind.name: kind for kind in KINDS}
# What --output may name: the kind of file it is, and so the stem every output shares.
OUTPUT_SUFFIXES = {suffix: kind.name for kind in KINDS for suffix in kind.suffixes}


def kinds_in(outputs, way: str | None = None, levels: str | None = None) -> list[OutputKind]:
    """The kinds among outputs (names: BuildOptions.outputs' keys) written that way or
    needing those levels (None: any), in KINDS' order."""
    return [kind for kind in KINDS if kind.name in outputs
            and (way is None or kind.way == way)
            and (levels is None or kind.levels == levels)]


def output_paths(options) -> dict[str, Path]:
    """The files a build writes, by kind, named after --output: NAME.png, .tif, .mbtiles or
    .pmtiles names that output and the stem the others share. The GeoTIFF and its QGIS
    style come with a PNG or GeoTIFF name (a tiles build makes just the tiles, and QGIS
    would draw NAME.mbtiles through a NAME.qml); the PNG when --output names one or
    png=True (not with png=False)."""
    named = options.output
    kind = OUTPUT_SUFFIXES.get(named.suffix.lower())
    if kind is None:
        raise OutputError(f"{named}: output name must end in .png, .tif, .mbtiles or .pmtiles "
                          "(the other outputs share its stem)")
    naming = Naming(options, named, named.with_suffix(""), kind)
    paths = {}
    for each in KINDS:
        path = each.path(naming)
        if path is not None:
            paths[each.name] = path
    for path in paths.values():
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise OutputError(f"{os.fsdecode(path)!a}: output names must be valid UTF-8 "
                              "(GDAL cannot write others)") from None
    # Two outputs of one name: the second would silently replace the first (--report
    # x.png wrote JSON over the PNG).
    seen = {}
    for kind, path in paths.items():
        same = seen.get(os.path.normcase(os.path.abspath(path)))
        if same is not None:
            raise OutputError(f"{path}: named for two outputs ({same} and {kind}); give "
                              "each its own name")
        seen[os.path.normcase(os.path.abspath(path))] = kind
    return paths
