"""The heatmap pipeline's array steps, each a plain function usable on its own.

points (EPSG:3857) -> count grid -> scaled heat in [0, 1] -> blurred heat -> RGB.
"""

import functools
import math
from collections import deque

import numpy as np

from . import tiles
from .errors import ParameterError
from .tiles import Bbox, Grid

# Cells of the zoom-12 tile grid (about 10 km at the equator) group points into
# clusters for the default extent: tracks are continuous, so one area's tracks
# share neighbouring cells, while a GPS glitch or a trip elsewhere does not.
CLUSTER_ZOOM = 12

# A dense grid larger than this is refused: its float32 heat alone is 1 GiB.
MAX_PIXELS = 2**28

@functools.cache
def _transformer(source: str, target: str):
    # pyproj is imported on first use: a rebuild from the parse cache never projects.
    from pyproj import Transformer

    return Transformer.from_crs(source, target, always_xy=True)


def project(lonlat: np.ndarray) -> np.ndarray:
    """Project (n, 2) longitude, latitude to EPSG:3857 x, y (latitude clamped to +-85.0511)."""
    lon = lonlat[:, 0]
    lat = np.clip(lonlat[:, 1], -tiles.MAX_LATITUDE, tiles.MAX_LATITUDE)
    x, y = _transformer("EPSG:4326", "EPSG:3857").transform(lon, lat)
    return np.column_stack([x, y])


def unproject(xy: np.ndarray) -> np.ndarray:
    """EPSG:3857 x, y to (n, 2) longitude, latitude."""
    lon, lat = _transformer("EPSG:3857", "EPSG:4326").transform(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def valid_lonlat(lonlat: np.ndarray) -> np.ndarray:
    """Mask of rows that are real positions: finite, |lon| <= 180, |lat| <= 90."""
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    with np.errstate(invalid="ignore"):
        return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)


def lonlat_box_to_xy(lat_min: float, lat_max: float, lon_min: float, lon_max: float) -> Bbox:
    """A latitude/longitude box (the seed's order) as EPSG:3857 bounds; checks it."""
    if not (-90 <= lat_min <= 90 and -90 <= lat_max <= 90):
        raise ParameterError(f"bounds: latitudes must be within -90..90, got {lat_min}, {lat_max}")
    if not (-180 <= lon_min <= 180 and -180 <= lon_max <= 180):
        raise ParameterError(
            f"bounds: longitudes must be within -180..180, got {lon_min}, {lon_max}"
        )
    if lat_min >= lat_max or lon_min >= lon_max:
        raise ParameterError(
            "bounds: need LAT_MIN < LAT_MAX and LON_MIN < LON_MAX, got "
            f"{lat_min} {lat_max} {lon_min} {lon_max}"
        )
    corners = project(np.array([[lon_min, lat_min], [lon_max, lat_max]]))
    return Bbox(corners[0, 0], corners[0, 1], corners[1, 0], corners[1, 1])


def inside(xy: np.ndarray, bounds: Bbox) -> np.ndarray:
    """Mask of points inside bounds (edges included)."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= bounds.left) & (x <= bounds.right) & (y >= bounds.bottom) & (y <= bounds.top)


def points_bounds(xy: np.ndarray) -> Bbox:
    """The bounding box of points."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return Bbox(lo[0], lo[1], hi[0], hi[1])


def main_cluster(xy: np.ndarray, zoom: int = CLUSTER_ZOOM) -> np.ndarray:
    """Mask of the points in the densest connected area: the robust default extent.

    Points are binned into tile-sized cells at `zoom`; 8-connected occupied cells form
    clusters; the cluster holding the most points wins. Stray points and far-away
    trips fall outside it.
    """
    res = tiles.resolution(zoom) * tiles.TILE_SIZE
    col = np.floor((xy[:, 0] + tiles.ORIGIN_SHIFT) / res).astype(np.int64)
    row = np.floor((tiles.ORIGIN_SHIFT - xy[:, 1]) / res).astype(np.int64)
    cells, cell_of_point, points_in_cell = np.unique(
        np.column_stack([row, col]), axis=0, return_inverse=True, return_counts=True)
    label = _label_cells([tuple(c) for c in cells.tolist()])
    points_in_label = np.bincount(label, weights=points_in_cell)
    return label[cell_of_point.ravel()] == points_in_label.argmax()


def _label_cells(cells: list[tuple[int, int]]) -> np.ndarray:
    """Cluster number of each cell: 8-connected neighbours share one (a breadth-first search;
    there are few cells, one per ~10 km square that has tracks)."""
    index = {cell: i for i, cell in enumerate(cells)}
    label = np.full(len(cells), -1, dtype=np.int64)
    for start in range(len(cells)):
        if label[start] >= 0:
            continue
        label[start] = start
        queue = deque([cells[start]])
        while queue:
            r, c = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    other = index.get((r + dr, c + dc))
                    if other is not None and label[other] < 0:
                        label[other] = start
                        queue.append(cells[other])
    return label


def choose_zoom(bounds: Bbox, max_size: int) -> int:
    """The largest zoom whose tile-aligned image of bounds fits max_size pixels a side."""
    for zoom in range(tiles.MAX_ZOOM, -1, -1):
        grid = tiles.grid_covering(bounds, zoom)
        if max(grid.width, grid.height) <= max_size:
            return zoom
    return 0


def check_grid_size(grid: Grid) -> None:
    """Refuse a grid too large to hold in memory, saying how to shrink it."""
    if grid.width * grid.height > MAX_PIXELS:
        raise ParameterError(
            f"zoom {grid.zoom} needs a {grid.width}x{grid.height} pixel image, more than "
            f"{MAX_PIXELS // 2**20} Mpx: lower --zoom or narrow --bounds"
        )


def pixel_index(xy: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each point in a grid (points outside give indices outside)."""
    res = tiles.resolution(grid.zoom)
    last = tiles.TILE_SIZE * 2**grid.zoom - 1  # lon 180 and lat -85.0511 are on the far edge
    col = np.floor((xy[:, 0] + tiles.ORIGIN_SHIFT) / res).astype(np.int64)
    row = np.floor((tiles.ORIGIN_SHIFT - xy[:, 1]) / res).astype(np.int64)
    col = np.minimum(col, last) - grid.col_off
    row = np.minimum(row, last) - grid.row_off
    return row, col


def count_points(xy: np.ndarray, grid: Grid) -> np.ndarray:
    """Trackpoints per pixel: a (height, width) uint32 grid; points outside are dropped."""
    row, col = pixel_index(xy, grid)
    keep = (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
    flat = row[keep] * grid.width + col[keep]
    counts = np.zeros(grid.height * grid.width, dtype=np.uint32)
    # unique + assign holds memory to the number of points, not of pixels (bincount would).
    pixels, n = np.unique(flat, return_counts=True)
    counts[pixels] = n
    return counts.reshape(grid.height, grid.width)


def cdf_scale(counts: np.ndarray) -> np.ndarray:
    """Each non-zero pixel's value: the share of non-zero pixels with a count <= its own.

    The empirical CDF of the counts (Strava's method): heat in (0, 1], and a few
    very busy pixels do not wash out the rest. Zero stays zero.
    """
    heat = np.zeros(counts.shape, dtype=np.float32)
    nonzero = counts > 0
    values, freq = np.unique(counts[nonzero], return_counts=True)
    if len(values):
        cdf = np.cumsum(freq) / freq.sum()
        heat[nonzero] = cdf[np.searchsorted(values, counts[nonzero])]
    return heat


def linear_scale(counts: np.ndarray) -> np.ndarray:
    """Counts divided by the largest count: heat in [0, 1]."""
    top = counts.max() if counts.size else 0
    heat = counts.astype(np.float32)
    return heat / top if top else heat


def check_sigma(sigma: float) -> None:
    """Raise ParameterError unless sigma is a finite number >= 0."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise ParameterError(f"sigma must be a number >= 0, got {sigma!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ParameterError(f"sigma must be a number >= 0, got {sigma!r}")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of sigma pixels, cut at 4 sigma (as scipy.ndimage does)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float32 image, zero outside it.

    Equal to scipy.ndimage.gaussian_filter(mode='constant'); done in numpy because
    importing scipy.ndimage alone costs more than a rebuild from the parse cache.
    """
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = image.astype(np.float32)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)])
        size = out.shape[axis]
        out = np.zeros_like(out)
        for offset, weight in enumerate(kernel):
            window = padded[offset:offset + size] if axis == 0 else padded[:, offset:offset + size]
            out += weight * window
    return out


def blur(heat: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of sigma pixels, rescaled so the hottest pixel is 1 (sigma 0: none)."""
    check_sigma(sigma)
    if sigma > 0:
        heat = gaussian_filter(heat, sigma)
    top = heat.max() if heat.size else 0
    return (heat / top).astype(np.float32) if top > 0 else heat.astype(np.float32)


def lut_index(heat: np.ndarray) -> np.ndarray:
    """Heat in [0, 1] as a uint8 index into a 256-entry lookup table."""
    return np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)


def shade(heat: np.ndarray, lut: np.ndarray, background=(0, 0, 0)) -> np.ndarray:
    """Colour heat through a (256, 3) uint8 lookup table over a background: (3, h, w) uint8."""
    index = lut_index(heat)
    empty = heat <= 0
    rgb = np.empty((3, *heat.shape), dtype=np.uint8)
    for band in range(3):  # one channel at a time: 3x faster than lut[index] on big images
        np.take(lut[:, band], index, out=rgb[band])
        rgb[band][empty] = background[band]
    return rgb


def shade_rgba(heat: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Colour heat through a (256, 4) lookup table: (4, h, w) uint8, transparent without heat.

    Heat that rounds to index 0 (below 1/510) is transparent too.
    """
    index = lut_index(heat)
    rgba = np.empty((4, *heat.shape), dtype=np.uint8)
    for band in range(4):
        np.take(lut[:, band], index, out=rgba[band])
    return rgba


def tone_map(rgb: np.ndarray, have: np.ndarray, brightness: float, tint, background):
    """A map made a dark grey backdrop: (3, h, w) uint8.

    Grey by luminance; a light map (mean grey above half) is inverted so roads
    stay visible on a dark ground; then dimmed and tinted. Pixels without map
    (have False) get the background colour.
    """
    grey = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]).astype(np.float32)
    if have.any() and grey[have].mean() > 127.5:
        grey = 255 - grey
    out = np.empty(rgb.shape, dtype=np.uint8)
    for band in range(3):
        toned = grey * (brightness * tint[band])
        out[band] = np.where(have, np.clip(np.rint(toned), 0, 255), background[band])
    return out


def blend_screen(base: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Heat colours (4, h, w) over a backdrop (3, h, w) by 'screen' blending, weighted by alpha.

    Screen (1 - (1 - a)(1 - b)) only ever lightens: dark heat leaves the map as it
    is, bright heat glows, as in the original script.
    """
    colour = rgba[:3].astype(np.float32) * (rgba[3].astype(np.float32) / 255)
    base = base.astype(np.float32)
    return np.clip(np.rint(base + colour - base * colour / 255), 0, 255).astype(np.uint8)


def pixel_centres(rows: np.ndarray, cols: np.ndarray, grid: Grid) -> np.ndarray:
    """(n, 2) longitude, latitude of the centres of grid pixels."""
    res = tiles.resolution(grid.zoom)
    x = -tiles.ORIGIN_SHIFT + (grid.col_off + cols + 0.5) * res
    y = tiles.ORIGIN_SHIFT - (grid.row_off + rows + 0.5) * res
    return unproject(np.column_stack([x, y]))
