"""Longitude/latitude to Web Mercator (EPSG:3857) and back, and what counts as a position.

The spherical Mercator formulas are written out: EPSG:3857 is defined by them, numpy
evaluates them faster than a pyproj Transformer call, and pyproj's import is spared
(the tests keep pyproj as the reference, to 1e-6 m).
"""

import numpy as np

from .tiles import EARTH_RADIUS, MAX_LATITUDE, Bbox

# A receiver with no fix yet reports 0, 0 ("null island"): never a real track point.
NULL_ISLAND_DEGREES = 1e-7


def project(lonlat: np.ndarray) -> np.ndarray:
    """Project (n, 2) longitude, latitude to EPSG:3857 x, y (latitude clamped to +-85.0511)."""
    lon = lonlat[:, 0]
    lat = np.clip(lonlat[:, 1], -MAX_LATITUDE, MAX_LATITUDE)
    xy = np.empty((len(lonlat), 2))
    xy[:, 0] = np.radians(lon) * EARTH_RADIUS
    xy[:, 1] = np.arctanh(np.sin(np.radians(lat))) * EARTH_RADIUS
    return xy


def unproject(xy: np.ndarray) -> np.ndarray:
    """EPSG:3857 x, y to (n, 2) longitude, latitude."""
    lonlat = np.empty((len(xy), 2))
    lonlat[:, 0] = np.degrees(xy[:, 0] / EARTH_RADIUS)
    lonlat[:, 1] = np.degrees(np.arctan(np.sinh(xy[:, 1] / EARTH_RADIUS)))
    return lonlat


def valid_lonlat(lonlat: np.ndarray) -> np.ndarray:
    """Mask of rows that are real positions: finite, |lon| <= 180, |lat| <= 90, not 0,0."""
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    with np.errstate(invalid="ignore"):
        on_earth = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        no_fix = (np.abs(lon) < NULL_ISLAND_DEGREES) & (np.abs(lat) < NULL_ISLAND_DEGREES)
    return on_earth & ~no_fix


def lonlat_box_to_xy(lat_min: float, lat_max: float, lon_min: float, lon_max: float) -> Bbox:
    """A latitude/longitude box (the original script's order) as EPSG:3857 bounds."""
    corners = project(np.array([[lon_min, lat_min], [lon_max, lat_max]], dtype=float))
    return Bbox(corners[0, 0], corners[0, 1], corners[1, 0], corners[1, 1])


def lonlat_bounds(bounds: Bbox) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds as west, south, east, north degrees (the tile files' and the
    page's bounds)."""
    corners = unproject(np.array([[bounds.left, bounds.bottom], [bounds.right, bounds.top]]))
    return tuple(float(v) for v in corners.ravel())
