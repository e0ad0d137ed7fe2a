"""Heat tiles rendered on request from parsed tracks (geoheat.render's Renderer), as a
tile source of geoheat.serve: a tile URL's query is the view (types, years, scaling,
normalisation, colormap); and load_renderer, reading the inputs for a Renderer."""

import importlib
import json
import re
import sys
import threading
from collections.abc import Callable
from urllib.parse import parse_qs

from . import __version__, tiles
from .colormaps import COLORMAP_NAMES
from .errors import InputError
from .options import NORMALIZES, SCALINGS, BuildOptions
from .page import page_legend
from .tilesource import NotFound

YEARS = re.compile(r"([0-9]{4})-([0-9]{4})")


class RenderedTiles:
    """Tiles rendered on request from parsed tracks (a render.Renderer)."""

    dynamic = True

    def __init__(self, renderer, description: str = ""):
        self.renderer = renderer
        self.description = description

    def explorer_json(self) -> bytes:
        """The explorer tiles' boxes (render.Renderer.explorer_tiles), made when asked."""
        return self.renderer.once_json("explorer", self.renderer.explorer_tiles)

    def meta(self) -> dict:
        r = self.renderer
        view = r.default_view
        years = list(view.years) if view.years else None
        return {
            "name": "geoheat", "generator": f"geoheat {__version__}", "dynamic": True,
            "tiles": "heat/{z}/{x}/{y}.png", "format": "png",
            "bounds": r.bounds_lonlat(), "minzoom": 0, "maxzoom": 19,
            "startzoom": r.start_zoom(),
            "types": r.types, "years": r.years,
            "cmaps": list(COLORMAP_NAMES), "scalings": list(SCALINGS),
            "normalizes": list(NORMALIZES),
            "view": {"types": list(view.types) if view.types else None,
                     "years": [years[0], years[-1]] if years else None,
                     "scaling": view.scaling, "normalize": view.normalize,
                     "cmap": r.default_cmap},
            "description": self.description,
            "explorer": "explorer.json",  # the explorer tiles: a layer the page can show
            **page_legend(r.options, view.normalize),
        }

    def legend(self, z: int, query: str) -> bytes:
        """The legend of zoom z for a tile URL's query (the view): JSON {"ticks": [[heat,
        count], ...]}; NotFound for a bad query."""
        view, _ = self.parse_query(query)
        if not 0 <= z <= tiles.MAX_ZOOM:
            raise NotFound(f"/legend/{z}.json")
        return json.dumps({"ticks": self.renderer.legend(z, view)}).encode()

    def warm(self) -> None:
        """Make the levels the page opens at, in the background (see Renderer.warm)."""
        try:
            self.renderer.warm()
        except Exception as err:  # noqa: BLE001 - only a head start: requests make them anyway
            print(f"geoheat: warning: making levels ahead failed: {err}", file=sys.stderr)

    def tile(self, z: int, x: int, y: int, query: str) -> tuple[bytes, str, str]:
        """PNG bytes, content type and ETag of a tile; NotFound for a bad query."""
        view, cmap = self.parse_query(query)
        r = self.renderer
        return r.png_tile(z, x, y, view, cmap), "image/png", r.etag(z, x, y, view, cmap)

    def etag(self, z, x, y, query) -> str:
        view, cmap = self.parse_query(query)
        return self.renderer.etag(z, x, y, view, cmap)

    def parse_query(self, query: str):
        """The view and colormap a tile URL's query asks for: c (colormap), s (scaling),
        n (normalize: global or local), t (types, comma-separated; empty: all), y
        (FROM-TO years; empty: all)."""
        try:
            fields = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                              max_num_fields=5)
        except ValueError:
            raise NotFound("bad query") from None
        if set(fields) - {"c", "s", "n", "t", "y"} or any(len(v) != 1 for v in fields.values()):
            raise NotFound("bad query")
        one = {key: values[0] for key, values in fields.items()}
        cmap = one.get("c")
        if cmap is not None and cmap not in COLORMAP_NAMES:
            raise NotFound("no such colormap")
        scaling = one.get("s")
        if scaling is not None and scaling not in SCALINGS:
            raise NotFound("no such scaling")
        normalize = one.get("n")
        if normalize is not None and normalize not in NORMALIZES:
            raise NotFound("no such normalisation")
        types = None
        if "t" in one:
            types = tuple(t for t in one["t"].split(",") if t)
            if any(t not in self.renderer.types for t in types) or len(set(types)) != len(types):
                raise NotFound("no such type")
            types = tuple(sorted(types))
        years = None
        if "y" in one:
            years = ()
            if one["y"]:
                match = YEARS.fullmatch(one["y"])
                if not match or not 1900 <= int(match[1]) <= int(match[2]) <= 2200:
                    raise NotFound("bad years")
                years = tuple(range(int(match[1]), int(match[2]) + 1))
        return self.renderer.view(types, years, scaling, normalize), cmap


def load_renderer(options: BuildOptions, on_warning: Callable | None = None, progress=None):
    """Read (through the parse cache) what the options name, for rendering tiles."""
    from .reading import read_files
    from .render import Renderer
    from .sources import find_sources

    sources = find_sources(options.inputs, options.pattern, on_warning=on_warning)
    parsed = read_files(sources, options.parse_cache, options.jobs, progress,
                        options.max_file_size)
    # The blur's scipy takes ~0.25 s to import: meanwhile, not before the first tile. Only
    # now: a worker forked while this thread held an import lock waited for it forever.
    threading.Thread(target=importlib.import_module, args=("scipy.ndimage",), daemon=True,
                     name="geoheat-import").start()
    renderer = Renderer(options, parsed, on_warning=on_warning)
    if renderer.selection(renderer.default_view).area is None:
        raise InputError("nothing to draw: no activity with positions matches")
    return renderer
