"""geoheat: a local heatmap of your GPS tracks, as GeoTIFF, PNG and CSV.

The pipeline, step by step (each usable on its own):
    find_sources -> reading.read_files (read_gpx, formats.read_fit, formats.read_tcx;
    heat.project) -> heat.line_pixels | heat.point_pixels -> heat.tile_counts
    -> heat.cdf_scale_tiles | heat.linear_scale_tiles -> heat.blur_tiles
    -> heat.shade -> writers
`build` runs them all.
"""

__version__ = "0.1.0"

from .errors import GeoheatError, GPXError, InputError, OutputError, ParameterError
from .gpx import Activity, read_gpx
from .sources import Source, find_sources
from .pipeline import BuildResult, build
from .tiles import Bbox, Grid, Tile

__all__ = [
    "Activity",
    "Bbox",
    "BuildResult",
    "GPXError",
    "GeoheatError",
    "Grid",
    "InputError",
    "OutputError",
    "ParameterError",
    "Tile",
    "__version__",
    "build",
    "find_sources",
    "Source",
    "read_gpx",
]
