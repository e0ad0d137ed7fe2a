"""`geoheat build --site`: the page of geoheat serve as a static site of a build's tiles."""

import json
import shutil
from pathlib import Path

from .errors import OutputError
from .options import BuildOptions
from .page import LEAFLET_FILES, OWN_FILES, WEB, leaflet_dir, page, tile_file_meta
from .renderedtiles import load_renderer


def build_site(folder: Path, options: BuildOptions, result) -> int:
    """The static site of a build (build --site): the heat tiles the build made (its
    result.tiles, from pipeline.run(keep_tiles=True)), as its MBTiles hold them, and the
    explorer tiles as geoheat serve gives them (render.Renderer.explorer_tiles; the
    parse cache makes the second read cheap). Returns the number of tiles written."""
    renderer = load_renderer(options)  # the build has warned already
    explorer = renderer.once_json("explorer", renderer.explorer_tiles)
    return write_site(folder, result.tiles, explorer=explorer)


def check_site_folder(folder: Path) -> None:
    """Refuse, before any work, a site folder that would not be written."""
    folder = Path(folder)
    if folder.is_symlink():
        raise OutputError(f"{folder}: is a link; geoheat does not follow it: name a folder")
    if folder.exists() and not _is_site(folder):
        raise OutputError(f"{folder}: exists and is not a geoheat site; name a new folder")
    if not folder.resolve().parent.is_dir():
        raise OutputError(f"{folder}: its folder {folder.resolve().parent} does not exist")
    from .outputs import check_replaceable_folder

    check_replaceable_folder(folder)  # the site is renamed into place, replacing it


def site_meta(tileset) -> dict:
    """The page's settings for a site of a build's tiles (what serving its MBTiles gives)."""
    rows = tileset.metadata
    meta = tile_file_meta(Path(rows.get("name", "geoheat")), rows.get("name"), "png",
                          [float(v) for v in rows["bounds"].split(",")], tileset.min_zoom,
                          tileset.max_zoom, rows.get("description", ""),
                          rows.get("geoheat_legend"))
    meta.update(tiles="tiles/{z}/{x}/{y}.png", index="tiles/index.json")
    return meta


def write_site(folder: Path, tileset, progress=None, explorer: bytes | None = None) -> int:
    """A static site in folder: index.html, the page's files, Leaflet's (copied from the
    installed package) and a build's heat tiles (a write_outputs.TileSet) as an XYZ folder
    tiles/z/x/y.png, with tiles/index.json listing them (the page asks for no tile the
    site lacks: no 404 in the browser's console); explorer: the explorer tiles' JSON
    (explorer.json, a layer the page offers; None: none).

    Written beside the folder and renamed into place, replacing an earlier geoheat site
    there; a folder that is not one is refused. Returns the number of tiles written.
    """
    folder = Path(folder)
    check_site_folder(folder)
    parent = folder.resolve().parent
    temp = parent / f".{folder.name}.geoheat-site-tmp"
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        meta = site_meta(tileset)
        if explorer is not None:
            meta["explorer"] = "explorer.json"
            (temp / "explorer.json").write_bytes(explorer)
        (temp / "index.html").write_bytes(page(meta))
        (temp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for name in OWN_FILES:
            shutil.copyfile(WEB / name, temp / name)
        leaflet = leaflet_dir()
        for name in LEAFLET_FILES:
            if (leaflet / name).is_file():
                (temp / "leaflet" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(leaflet / name, temp / "leaflet" / name)
        index: dict = {}
        (temp / "tiles").mkdir()
        items = sorted(tileset.pngs.items())
        for tile, data in (progress(items, "Site tiles", len(items)) if progress else items):
            path = temp / "tiles" / str(tile.z) / str(tile.x) / f"{tile.y}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            index.setdefault(str(tile.z), {}).setdefault(str(tile.x), []).append(tile.y)
        (temp / "tiles" / "index.json").write_text(json.dumps(index, separators=(",", ":")),
                                                  encoding="utf-8")
        if folder.exists():
            old = parent / f".{folder.name}.geoheat-site-old"
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            temp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temp.rename(folder)
    except OSError as err:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(f"{folder}: cannot write the site: {err.strerror or err}") from None
    return len(items)


def _is_site(folder: Path) -> bool:
    """An empty folder, or one an earlier write_site made (its meta.json says so)."""
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and str(meta.get("generator", "")).startswith("geoheat")
