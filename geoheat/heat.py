"""The heatmap pipeline's array steps, each a plain function usable on its own.

points (EPSG:3857) -> pixels -> counts -> scaled heat in [0, 1] -> blurred heat -> RGB.

Two forms of a raster: dense (one array over a Grid) and sparse: a dict from
(tile x, tile y) to the 256x256 array of each tile that holds data, so memory
follows the area the tracks cover, not their bounding box.
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

# Consecutive points further apart than this (on the ground) are not joined in lines
# mode: the GPS was off, or lost, in between. At 1-10 s recording intervals even a fast
# descent moves less; a tunnel shorter than this is drawn straight through, as ridden.
MAX_STEP_METRES = 300.0

TileKey = tuple[int, int]  # (tile x, tile y) at the grid's zoom

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
    # Column by column: reducing an (n, 2) array along axis 0 is 20x slower in numpy.
    x, y = xy[:, 0], xy[:, 1]
    return Bbox(x.min(), y.min(), x.max(), y.max())


def main_cluster(xy: np.ndarray, zoom: int = CLUSTER_ZOOM) -> np.ndarray:
    """Mask of the points in the densest connected area: the robust default extent.

    Points are binned into tile-sized cells at `zoom`; 8-connected occupied cells form
    clusters; the cluster holding the most points wins. Stray points and far-away
    trips fall outside it.
    """
    res = tiles.resolution(zoom) * tiles.TILE_SIZE
    col = np.floor((xy[:, 0] + tiles.ORIGIN_SHIFT) / res).astype(np.int64)
    row = np.floor((tiles.ORIGIN_SHIFT - xy[:, 1]) / res).astype(np.int64)
    # One integer per cell: a 1-D unique is 30x faster than np.unique(axis=0) on pairs.
    width = int(col.max()) + 1
    keys, cell_of_point, points_in_cell = np.unique(
        row * width + col, return_inverse=True, return_counts=True)
    cells = list(zip((keys // width).tolist(), (keys % width).tolist()))
    label = _label_cells(cells)
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


def count_points(xy: np.ndarray, grid: Grid) -> np.ndarray:
    """Trackpoints per pixel: a (height, width) uint32 grid; points outside are dropped."""
    row, col = point_pixels(xy, grid.zoom)
    row, col = row - grid.row_off, col - grid.col_off
    keep = (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
    flat = row[keep] * grid.width + col[keep]
    counts = np.zeros(grid.height * grid.width, dtype=np.uint32)
    # unique + assign holds memory to the number of points, not of pixels (bincount would).
    pixels, n = np.unique(flat, return_counts=True)
    counts[pixels] = n
    return counts.reshape(grid.height, grid.width)


def global_pixels(xy: np.ndarray, zoom: int) -> np.ndarray:
    """(n, 2) fractional (column, row) of points in the world's pixel grid at zoom."""
    res = tiles.resolution(zoom)
    # Just inside the world: lon 180 and lat -85.0511 stay in the last pixel.
    last = np.nextafter(float(tiles.TILE_SIZE * 2**zoom), 0)
    col = np.clip((xy[:, 0] + tiles.ORIGIN_SHIFT) / res, 0, last)
    row = np.clip((tiles.ORIGIN_SHIFT - xy[:, 1]) / res, 0, last)
    return np.column_stack([col, row])


def select_points(xy: np.ndarray, offsets: np.ndarray, keep: np.ndarray):
    """Keep the points where keep is True; a segment is cut where points were dropped.

    Returns the kept (n, 2) points and their segment offsets.
    """
    segment_start = np.zeros(len(xy), dtype=bool)
    segment_start[offsets[:-1][offsets[:-1] < len(xy)]] = True
    # A kept point starts a segment if its segment starts there or its predecessor went.
    after_gap = np.concatenate([[True], ~keep[:-1]]) if len(xy) else segment_start
    starts = (segment_start | after_gap)[keep]
    return xy[keep], np.append(np.flatnonzero(starts), starts.size).astype(np.int64)


def split_gaps(xy: np.ndarray, offsets: np.ndarray, max_step: float = MAX_STEP_METRES):
    """Segment offsets with a new segment wherever consecutive points are > max_step m apart.

    Distances are on the ground: Web Mercator metres shrink by cosh(y / R).
    """
    if len(xy) < 2:
        return offsets
    step = np.hypot(*np.diff(xy, axis=0).T)
    middle_y = (xy[1:, 1] + xy[:-1, 1]) / 2
    ground = step / np.cosh(middle_y / tiles.EARTH_RADIUS)
    breaks = np.flatnonzero(ground > max_step) + 1
    return np.union1d(offsets, breaks).astype(np.int64)


def point_pixels(xy: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Global row and column of each point's pixel."""
    px = np.floor(global_pixels(xy, zoom)).astype(np.int64)
    return px[:, 1], px[:, 0]


def line_pixels(xy: np.ndarray, offsets: np.ndarray, zoom: int):
    """Global rows and columns the segments pass through, once per pass.

    Each step between consecutive points is sampled at most one pixel apart, so
    every segment is an unbroken 8-connected line; a pixel is listed each time a
    segment enters it (so a road ridden twice counts 2). Vectorised: no loop over points.
    """
    if not len(xy):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    px = global_pixels(xy, zoom)
    segment = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    last_in_segment = np.zeros(len(xy), dtype=bool)
    last_in_segment[offsets[1:] - 1] = True
    # Step i goes from point i to point i + 1; a segment's last point is a zero-length step.
    end = np.where(last_in_segment, np.arange(len(xy)), np.arange(len(xy)) + 1)
    delta = px[end] - px
    longest = np.maximum(np.abs(delta[:, 0]), np.abs(delta[:, 1]))
    samples = np.maximum(np.ceil(longest), 1).astype(np.int64)
    step_of = np.repeat(np.arange(len(xy)), samples)
    first = np.cumsum(samples) - samples
    t = (np.arange(samples.sum()) - np.repeat(first, samples)) / np.repeat(samples, samples)
    cols = np.floor(px[step_of, 0] + t * delta[step_of, 0]).astype(np.int64)
    rows = np.floor(px[step_of, 1] + t * delta[step_of, 1]).astype(np.int64)
    seg = segment[step_of]
    entered = np.ones(len(rows), dtype=bool)
    entered[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1]) | (seg[1:] != seg[:-1])
    return rows[entered], cols[entered]


def tile_counts(rows: np.ndarray, cols: np.ndarray, grid: Grid) -> dict[TileKey, np.ndarray]:
    """Sparse counts: for each tile of the grid with data, its (256, 256) uint32 counts.

    rows and cols are global pixel indices, one entry per count; entries outside the
    grid are dropped.
    """
    size = tiles.TILE_SIZE
    inside = ((rows >= grid.row_off) & (rows < grid.row_off + grid.height)
              & (cols >= grid.col_off) & (cols < grid.col_off + grid.width))
    rows, cols = rows[inside], cols[inside]
    tiles_across = 2**grid.zoom
    key = (rows // size) * tiles_across + cols // size
    flat = key * (size * size) + (rows % size) * size + cols % size
    pixels, counts = np.unique(flat, return_counts=True)
    keys = pixels // (size * size)
    result = {}
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for part_pixels, part_counts in zip(np.split(pixels, bounds), np.split(counts, bounds)):
        tile_key = int(part_pixels[0] // (size * size))
        block = np.zeros(size * size, dtype=np.uint32)
        block[part_pixels % (size * size)] = part_counts
        result[(tile_key % tiles_across, tile_key // tiles_across)] = block.reshape(size, size)
    return result if len(pixels) else {}


def cdf_scale_tiles(counts: dict[TileKey, np.ndarray]) -> dict[TileKey, np.ndarray]:
    """cdf_scale over sparse tiles: the CDF of the non-zero counts of all tiles together."""
    nonzero = [block[block > 0] for block in counts.values()]
    values, freq = np.unique(np.concatenate(nonzero) if nonzero else [], return_counts=True)
    cdf = (np.cumsum(freq) / max(freq.sum(), 1)).astype(np.float32)
    scaled = {}
    for key, block in counts.items():
        out = np.zeros(block.shape, dtype=np.float32)
        mask = block > 0
        out[mask] = cdf[np.searchsorted(values, block[mask])]
        scaled[key] = out
    return scaled


def linear_scale_tiles(counts: dict[TileKey, np.ndarray]) -> dict[TileKey, np.ndarray]:
    """linear_scale over sparse tiles: counts / the largest count of all tiles."""
    top = max((int(block.max()) for block in counts.values()), default=0)
    return {key: block.astype(np.float32) / (top or 1) for key, block in counts.items()}


def blur_tiles(scaled: dict[TileKey, np.ndarray], sigma: float, grid: Grid):
    """blur over sparse tiles, without seams: each tile is blurred with a halo of its
    neighbours' pixels, and tiles next to data (inside the grid) are added."""
    check_sigma(sigma)
    size = tiles.TILE_SIZE
    if sigma == 0 or not scaled:
        blurred = {key: block.astype(np.float32) for key, block in scaled.items()}
    else:
        radius = len(gaussian_kernel(sigma)) // 2
        reach = -(-radius // size)  # tiles of halo
        tx0, ty0 = grid.col_off // size, grid.row_off // size
        tx1, ty1 = tx0 + grid.width // size, ty0 + grid.height // size
        wanted = {(x + dx, y + dy) for x, y in scaled
                  for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
                  if tx0 <= x + dx < tx1 and ty0 <= y + dy < ty1}
        blurred = {}
        for x, y in sorted(wanted):
            window = np.zeros((size + 2 * radius, size + 2 * radius), dtype=np.float32)
            for dx in range(-reach, reach + 1):
                for dy in range(-reach, reach + 1):
                    block = scaled.get((x + dx, y + dy))
                    if block is None:
                        continue
                    # The block's place in window coordinates, clipped to the window.
                    r0, c0 = radius + dy * size, radius + dx * size
                    rs, cs = max(r0, 0), max(c0, 0)
                    re, ce = min(r0 + size, window.shape[0]), min(c0 + size, window.shape[1])
                    if rs < re and cs < ce:
                        window[rs:re, cs:ce] = block[rs - r0:re - r0, cs - c0:ce - c0]
            # The window's own edge is as far from the tile as the kernel reaches, so its
            # zero padding outside never touches the tile's pixels.
            out = gaussian_filter(window, sigma)[radius:radius + size, radius:radius + size]
            if out.any():
                blurred[(x, y)] = out
    top = max((float(block.max()) for block in blurred.values()), default=0.0)
    return {key: (block / top).astype(np.float32) if top > 0 else block
            for key, block in blurred.items()}


def to_dense(sparse: dict[TileKey, np.ndarray], grid: Grid, dtype=np.float32) -> np.ndarray:
    """A sparse raster as one (height, width) array over the grid (zero where no tile)."""
    dense = np.zeros((grid.height, grid.width), dtype=dtype)
    size = tiles.TILE_SIZE
    for (x, y), block in sparse.items():
        r, c = y * size - grid.row_off, x * size - grid.col_off
        dense[r:r + size, c:c + size] = block
    return dense


def from_dense(dense: np.ndarray, grid: Grid) -> dict[TileKey, np.ndarray]:
    """A (height, width) array over the grid as a sparse raster (all-zero tiles left out)."""
    size = tiles.TILE_SIZE
    sparse = {}
    for t in tiles.grid_tiles(grid):
        r, c = t.y * size - grid.row_off, t.x * size - grid.col_off
        block = dense[r:r + size, c:c + size]
        if block.any():
            sparse[(t.x, t.y)] = block.copy()
    return sparse


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
