"""geoheat: a local heatmap of your GPS tracks, as GeoTIFF, PNG, CSV and MBTiles.

The pipeline, one module a stage (each step a plain function usable on its own):
    sources (find_sources) -> reading (read_files: gpx, formats; projection.project)
    -> activities (select_activities, on summaries) -> extent (choose_area, choose_zoom)
    -> rasterize (count_tracks per activity, add_counts) -> heat (cdf_scale_tiles |
    linear_scale_tiles, blur_tiles) -> colour (shade, picture) -> writers
`build` (pipeline.run over options.BuildOptions) runs them all.

Names are imported on first use, so `import geoheat` (and `geoheat --help`) is instant.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Activity": "gpx", "read_gpx": "gpx",
    "Bbox": "tiles", "Grid": "tiles", "Tile": "tiles",
    "BuildOptions": "options",
    "BuildResult": "report",
    "build": "pipeline",
    "Source": "source_bytes", "find_sources": "sources",
    "GeoheatError": "errors", "GPXError": "errors", "InputError": "errors",
    "OutputError": "errors", "ParameterError": "errors", "ReadError": "errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'geoheat' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
