"""geoheat: a local heatmap of your GPS tracks, as GeoTIFF, PNG and CSV.

The pipeline, step by step (each usable on its own):
    find_gpx_files -> read_gpx -> heat.project -> heat.count_points
    -> heat.cdf_scale | heat.linear_scale -> heat.blur -> heat.shade -> writers
`build` runs them all.
"""

__version__ = "0.1.0"

from .errors import GeoheatError, GPXError, InputError, OutputError, ParameterError
from .gpx import Activity, find_gpx_files, read_gpx
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
    "find_gpx_files",
    "find_sources",
    "Source",
    "read_gpx",
]
