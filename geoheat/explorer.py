"""Explorer tiles: the map tiles (zoom 14 by default) the drawn lines pass through.

The explorer game of people who map their own tracks (VeloViewer, Statshunters,
squadrats at zoom 17): which tiles you have been through, the side of your biggest
square of them, the size of your biggest cluster (tiles whose four neighbours are all
visited, connected). A tile is credited where a drawn line crosses it, found by exact
traversal of each straight step in tile space (a step between two points 600 m apart
credits every tile between them), not only where a point falls; the lines are the
build's: broken at the gaps it does not draw, cut by the privacy zones.

`write_geopackage` writes the tiles, the square and the cluster as three layers of a
GeoPackage, each with a QGIS style in its `layer_styles` table, so QGIS opens it styled.
"""

import datetime as dt
import sqlite3
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import tiles

DEFAULT_ZOOM = 14


class Visited(NamedTuple):
    """The tiles visited: (k, 2) tile x, y, sorted by y then x; per tile the activities
    through it and the first and last of their start dates (None: no date known)."""

    zoom: int
    tiles: np.ndarray
    visits: np.ndarray
    first: list
    last: list


class Score(NamedTuple):
    """The explorer's score: tiles, the biggest square (side, top-left tile) and the
    biggest cluster (its tiles)."""

    tiles: int
    max_square: int
    square_corner: tuple[int, int] | None
    cluster: np.ndarray  # (k, 2) x, y


def line_tiles(xy: np.ndarray, offsets: np.ndarray, zoom: int = DEFAULT_ZOOM) -> np.ndarray:
    """The (k, 2) tiles x, y at zoom that the segments pass through (each once, sorted
    by y then x): every point's tile, and for each step between two points of a segment
    the tiles between, by exact traversal in tile space (the step is cut where it
    crosses a tile edge; each piece's middle names its tile; a step that only grazes
    a corner credits no tile there)."""
    if not len(xy):
        return np.empty((0, 2), dtype=np.int64)
    col, row = tiles.world_pixels(np.asarray(xy, dtype=float), zoom)
    u, v = col / tiles.TILE_SIZE, row / tiles.TILE_SIZE
    found = [np.column_stack([np.floor(u), np.floor(v)]).astype(np.int64)]
    offsets = np.asarray(offsets, dtype=np.int64)
    last = np.zeros(len(xy), dtype=bool)
    last[offsets[1:][offsets[1:] > 0] - 1] = True
    step = np.flatnonzero(~last[:-1])
    u0, v0, u1, v1 = u[step], v[step], u[step + 1], v[step + 1]
    crossings = []
    for a, b in ((u0, u1), (v0, v1)):
        low, high = np.minimum(a, b), np.maximum(a, b)
        first = np.floor(low) + 1  # the tile edges strictly between the ends
        count = np.maximum(np.ceil(high) - first, 0).astype(np.int64)
        which = np.repeat(np.arange(len(step)), count)
        edge = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(
            np.cumsum(count) - count, count))
        crossings.append((which, (edge - a[which]) / (b[which] - a[which])))
    which = np.concatenate([crossings[0][0], crossings[1][0]])
    if len(which):
        t = np.concatenate([crossings[0][1], crossings[1][1]])
        # Each crossing step cut at its crossings: the pieces between consecutive cuts.
        crossing_steps = np.unique(which)
        which = np.concatenate([which, crossing_steps, crossing_steps])
        t = np.concatenate([t, np.zeros(len(crossing_steps)), np.ones(len(crossing_steps))])
        order = np.lexsort((t, which))
        which, t = which[order], t[order]
        same = (which[1:] == which[:-1]) & (t[1:] - t[:-1] > 1e-12)
        middle_t = (t[1:] + t[:-1])[same] / 2
        piece = which[1:][same]
        mu = u0[piece] + middle_t * (u1[piece] - u0[piece])
        mv = v0[piece] + middle_t * (v1[piece] - v0[piece])
        found.append(np.column_stack([np.floor(mu), np.floor(mv)]).astype(np.int64))
    every = np.concatenate(found)
    across = 2**zoom
    every = every[(every >= 0).all(axis=1) & (every < across).all(axis=1)]
    keys = np.unique(every[:, 1] * across + every[:, 0])
    return np.column_stack([keys % across, keys // across])


def activity_tiles(activity, privacy=None, zoom: int = DEFAULT_ZOOM) -> np.ndarray:
    """The tiles one activity's drawn lines pass through: its points (a ParsedFile with
    them loaded) broken at the gaps the build does not draw (rasterize.split_gaps), what
    privacy (a privacy.Privacy, or None) hides cut out."""
    from .rasterize import split_gaps

    xy, offsets = activity.xy, split_gaps(activity.xy, activity.offsets, activity.times)
    if privacy is not None:
        from .privacy import hide

        xy, offsets = hide(xy, offsets, activity.times, privacy)[:2]
    return line_tiles(xy, offsets, zoom)


def lonlat_boxes(found_tiles: np.ndarray, zoom: int) -> list[list[float]]:
    """Each tile's [west, south, east, north] in degrees (for a web map)."""
    from .projection import unproject

    found_tiles = np.asarray(found_tiles, dtype=float).reshape(-1, 2)
    size = 2 * tiles.ORIGIN_SHIFT / 2**zoom
    top_left = np.column_stack([-tiles.ORIGIN_SHIFT + found_tiles[:, 0] * size,
                                tiles.ORIGIN_SHIFT - found_tiles[:, 1] * size])
    west_north = unproject(top_left) if len(top_left) else np.empty((0, 2))
    east_south = unproject(top_left + [size, -size]) if len(top_left) else np.empty((0, 2))
    return np.round(np.column_stack([west_north[:, 0], east_south[:, 1], east_south[:, 0],
                                     west_north[:, 1]]), 7).tolist()


def visited(per_activity, zoom: int = DEFAULT_ZOOM) -> Visited:
    """Sum each activity's tiles (line_tiles) with its start date (a date or None):
    per_activity is an iterable of (tiles, date)."""
    across = 2**zoom
    keys, days = [], []
    for activity_tiles, date in per_activity:
        keys.append(activity_tiles[:, 1] * across + activity_tiles[:, 0])
        day = date.toordinal() if date is not None else -1
        days.append(np.full(len(activity_tiles), day, dtype=np.int64))
    if not keys:
        return Visited(zoom, np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64), [], [])
    keys, days = np.concatenate(keys), np.concatenate(days)
    order = np.lexsort((days, keys))
    keys, days = keys[order], days[order]
    unique, starts, visits = np.unique(keys, return_index=True, return_counts=True)
    dated = np.where(days >= 0, days, np.iinfo(np.int64).max)
    first = np.minimum.reduceat(dated, starts)
    latest = np.maximum.reduceat(days, starts)

    def date_of(day):
        return dt.date.fromordinal(int(day)) if 0 < day < np.iinfo(np.int64).max else None

    return Visited(zoom, np.column_stack([unique % across, unique // across]),
                   visits.astype(np.int64), [date_of(d) for d in first],
                   [date_of(d) for d in latest])


def max_square(visited_tiles: np.ndarray) -> tuple[int, tuple[int, int] | None]:
    """The side of the biggest square of visited tiles, and its top-left tile (x, y):
    side(x, y) = 1 + the least of its left, upper and upper-left neighbours' sides, over
    the tiles in row order (sparse: only visited tiles are looked at)."""
    side: dict[tuple[int, int], int] = {}
    best, corner = 0, None
    for x, y in sorted(map(tuple, np.asarray(visited_tiles).tolist()), key=lambda t: (t[1], t[0])):
        size = 1 + min(side.get((x - 1, y), 0), side.get((x, y - 1), 0),
                       side.get((x - 1, y - 1), 0))
        side[(x, y)] = size
        if size > best:
            best, corner = size, (x - size + 1, y - size + 1)
    return best, corner


def max_cluster(visited_tiles: np.ndarray) -> np.ndarray:
    """The biggest cluster: the largest 4-connected group of visited tiles whose four
    neighbours are all visited; its (k, 2) tiles x, y, sorted by y then x (ties: the
    group whose first tile comes first)."""
    have = set(map(tuple, np.asarray(visited_tiles).tolist()))
    inner = {(x, y) for x, y in have if {(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)} <= have}
    seen, best = set(), []
    for start in sorted(inner, key=lambda t: (t[1], t[0])):
        if start in seen:
            continue
        group, queue = [], deque([start])
        seen.add(start)
        while queue:
            x, y = queue.popleft()
            group.append((x, y))
            for near in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
                if near in inner and near not in seen:
                    seen.add(near)
                    queue.append(near)
        if len(group) > len(best):
            best = group
    ordered = sorted(best, key=lambda t: (t[1], t[0]))
    return np.array(ordered, dtype=np.int64).reshape(-1, 2)


def score(found: Visited) -> Score:
    side, corner = max_square(found.tiles)
    return Score(len(found.tiles), side, corner, max_cluster(found.tiles))


# --- the GeoPackage ------------------------------------------------------------------------

CRS = "EPSG:3857"  # the tiles are squares in Web Mercator, as on the map
# QGIS's own table of styles in a GeoPackage (what "Save as default" writes there).
_LAYER_STYLES = """CREATE TABLE layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256),
    f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
    useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"""
# layer -> (fill RGBA, outline RGBA, outline width in mm): visited tiles in translucent
# orange, the cluster in purple over them, the square as a thick blue frame.
STYLES = {
    "tiles": ("255,140,0,90", "204,85,0,160", 0.2),
    "max_cluster": ("120,40,200,110", "90,20,160,200", 0.2),
    "max_square": ("0,0,0,0", "0,90,255,255", 1.0),
}


def style_qml(fill: str, outline: str, width: float) -> str:
    """A QGIS style of one fill symbol (both the older 'prop' and newer 'Option' forms)."""
    values = {"color": fill, "outline_color": outline, "outline_style": "solid",
              "outline_width": f"{width:g}", "outline_width_unit": "MM", "style": "solid",
              "joinstyle": "miter"}
    props = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in values.items())
    options = "".join(f'<Option name="{k}" type="QString" value="{v}"/>'
                      for k, v in values.items())
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.28.0" styleCategories="Symbology">\n'
            ' <renderer-v2 type="singleSymbol" symbollevels="0" forceraster="0" '
            'enableorderby="0">\n'
            '  <symbols>\n'
            '   <symbol type="fill" name="0" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            f'    <layer class="SimpleFill" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">{options}</Option>{props}</layer>\n'
            '   </symbol>\n'
            '  </symbols>\n'
            ' </renderer-v2>\n'
            '</qgis>\n')


def _square(x: int, y: int, zoom: int, side: int = 1) -> dict:
    """A GeoJSON-like polygon of side x side tiles from tile (x, y), in EPSG:3857."""
    top_left = tiles.xy_bounds(tiles.Tile(x, y, zoom))
    bottom_right = tiles.xy_bounds(tiles.Tile(x + side - 1, y + side - 1, zoom))
    left, top = top_left.left, top_left.top
    right, bottom = bottom_right.right, bottom_right.bottom
    return {"type": "Polygon", "coordinates": [[(left, top), (right, top), (right, bottom),
                                                (left, bottom), (left, top)]]}


def write_geopackage(path: Path, found: Visited, result: Score) -> None:
    """Three layers, each styled for QGIS: tiles (visits, first_visit, last_visit),
    max_square (side) and max_cluster (one feature a tile). OSError if it cannot."""
    import fiona
    from fiona.crs import CRS as FionaCRS

    crs = FionaCRS.from_string(CRS)
    zoom = found.zoom
    layers = {
        "tiles": ({"geometry": "Polygon", "properties": {
            "x": "int", "y": "int", "zoom": "int", "visits": "int", "first_visit": "date",
            "last_visit": "date"}},
            [{"geometry": _square(int(x), int(y), zoom), "properties": {
                "x": int(x), "y": int(y), "zoom": zoom, "visits": int(n),
                "first_visit": first.isoformat() if first else None,
                "last_visit": last.isoformat() if last else None}}
             for (x, y), n, first, last in zip(found.tiles.tolist(), found.visits,
                                                found.first, found.last)]),
        "max_square": ({"geometry": "Polygon", "properties": {
            "side": "int", "x": "int", "y": "int", "zoom": "int"}},
            [] if result.square_corner is None else [{
                "geometry": _square(*result.square_corner, zoom, result.max_square),
                "properties": {"side": result.max_square, "x": result.square_corner[0],
                               "y": result.square_corner[1], "zoom": zoom}}]),
        "max_cluster": ({"geometry": "Polygon", "properties": {
            "x": "int", "y": "int", "zoom": "int", "cluster_tiles": "int"}},
            [{"geometry": _square(int(x), int(y), zoom), "properties": {
                "x": int(x), "y": int(y), "zoom": zoom, "cluster_tiles": len(result.cluster)}}
             for x, y in result.cluster.tolist()]),
    }
    try:
        for name, (schema, features) in layers.items():
            with fiona.open(path, "w", driver="GPKG", layer=name, schema=schema,
                            crs=crs) as layer:
                layer.writerecords(features)
    except fiona.errors.FionaError as err:
        raise OSError(str(err)) from None
    _add_styles(path)


def _add_styles(path: Path) -> None:
    """QGIS's layer_styles table, registered in gpkg_contents as attributes, with each
    layer's style as its default."""
    with sqlite3.connect(path) as db:
        geometry = dict(db.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
        db.execute(_LAYER_STYLES)
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier) "
                   "VALUES ('layer_styles', 'attributes', 'layer_styles')")
        for name, (fill, outline, width) in STYLES.items():
            db.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, "
                       "f_table_name, f_geometry_column, styleName, styleQML, styleSLD, "
                       "useAsDefault, description, owner, ui) "
                       "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', '')",
                       (name, geometry.get(name, "geom"), f"geoheat {name}",
                        style_qml(fill, outline, width), f"geoheat's style for {name}"))
    db.close()
