"""The page: geoheat/web/index.html with its settings, the page's own files and
Leaflet's (from the installed xstatic-leaflet package), and the settings the page draws
with (its legend; a tile file's metadata as the page takes it). Served by geoheat.serve
and written by geoheat.staticsite."""

import json
from pathlib import Path

from . import __version__
from .colormaps import COLORMAP_NAMES
from .errors import InputError

WEB = Path(__file__).with_name("web")
OSM_ATTRIBUTION = ('&copy; <a href="https://www.openstreetmap.org/copyright">'
                   "OpenStreetMap</a> contributors")
# Leaflet's files the page uses, by the name they are served under (no other name is).
LEAFLET_FILES = ("leaflet.js", "leaflet.css", "images/layers.png", "images/layers-2x.png",
                 "images/marker-icon.png", "images/marker-icon-2x.png",
                 "images/marker-shadow.png")
OWN_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def leaflet_dir() -> Path:
    """The folder of Leaflet's files in the installed xstatic-leaflet package."""
    try:
        import xstatic.pkg.leaflet as leaflet
    except ImportError:
        raise InputError("the page needs the xstatic-leaflet package: "
                         "pip install xstatic-leaflet") from None
    return Path(leaflet.BASE_DIR)


def leaflet_version() -> str:
    import xstatic.pkg.leaflet as leaflet

    return leaflet.VERSION


# What a geoheat build's tile file says of its legend (write_outputs.write_outputs), and all the page
# takes from it: a damaged or foreign file's other keys never reach /meta.json.
LEGEND_KEYS = ("legend", "unit", "local", "ramps", "view")


def tile_file_meta(path, name, fmt, bounds, minzoom, maxzoom, description,
                   legend=None) -> dict:
    meta = {"name": name or path.stem, "generator": f"geoheat {__version__}",
            "dynamic": False, "tiles": "heat/{z}/{x}/{y}.png", "format": fmt,
            "bounds": bounds, "minzoom": minzoom, "maxzoom": maxzoom,
            "description": description or str(path.name)}
    try:  # a geoheat build's tiles carry their legend, level by level
        found = json.loads(legend) if legend else None
    except ValueError:
        found = None
    if isinstance(found, dict):
        meta.update({key: found[key] for key in LEGEND_KEYS if key in found})
    return meta


def page_legend(options, normalize: str | None = None) -> dict:
    """What the page draws its legend with: each colormap's colours (17 stops, heat 0 to
    1), the unit, whether heat is ranked nearby (--normalize local: fewer/more)."""
    from .colormaps import css_stops

    return {"ramps": {name: css_stops(name) for name in COLORMAP_NAMES},
            "unit": "passes" if options.mode == "lines" else "track points",
            "local": (normalize or options.normalize) == "local"}


def page(meta: dict) -> bytes:
    """index.html with the settings in it (so the map starts without another request)."""
    text = (WEB / "index.html").read_text(encoding="utf-8")
    data = json.dumps(meta).replace("<", "\\u003c").replace(">", "\\u003e")
    return text.replace("{{META}}", data).replace("{{LEAFLET}}", leaflet_version()).encode()


class TileFile:
    """A tile file served as it is (MBTilesFile, PMTilesFile): its page's settings from
    its metadata (`_meta`: name, bounds, zooms, description, legend) and `format`."""

    def meta(self) -> dict:
        m = self._meta
        return tile_file_meta(self.path, m["name"], self.format, m["bounds"], m["minzoom"],
                              m["maxzoom"], m["description"], m["legend"])
