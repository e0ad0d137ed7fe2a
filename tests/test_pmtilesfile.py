"""A PMTiles file served as it is (geoheat.pmtilesfile): read with pread, its
directories bounded; a damaged one refused at start in one line, or a 500 for the bad
tile while the rest is served (issue 19)."""

import json
import os

import pytest

from geoheat.options import BuildOptions
from geoheat.pmtilesfile import PMTilesFile

from .serving import (SAMPLES, ZOOM, ask, get, noise_png, refusal, renderer_for, running,
                      start_command, stopped)


@pytest.fixture(scope="module")
def samples_renderer():
    return renderer_for(BuildOptions(inputs=[SAMPLES]))


def test_a_pmtiles_file_is_served_as_it_is(tmp_path, samples_renderer):
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    keys = samples_renderer.lit_tiles(ZOOM)
    path = tmp_path / "h.pmtiles"
    with open(path, "wb") as f:
        writer = Writer(f)
        for x, y in sorted(keys, key=lambda k: zxy_to_tileid(ZOOM, *k)):
            writer.write_tile(zxy_to_tileid(ZOOM, x, y), samples_renderer.png_tile(ZOOM, x, y))
        writer.finalize({"tile_type": TileType.PNG, "tile_compression": Compression.NONE,
                         "min_zoom": ZOOM, "max_zoom": ZOOM, "min_lon_e7": 144_000_000,
                         "min_lat_e7": 460_000_000, "max_lon_e7": 146_000_000,
                         "max_lat_e7": 461_000_000, "center_zoom": ZOOM,
                         "center_lon_e7": 145_000_000, "center_lat_e7": 460_500_000},
                        {"name": "samples"})
    with running(PMTilesFile(path)) as server:
        x, y = keys[0]
        status, headers, body = get(server, f"/heat/{ZOOM}/{x}/{y}.png")
        assert status == 200 and body == samples_renderer.png_tile(ZOOM, x, y)
        meta = json.loads(get(server, "/meta.json")[2])
        assert meta["name"] == "samples" and meta["maxzoom"] == ZOOM and not meta["dynamic"]


def pmtiles_bytes(tiles: dict | None = None, *, root=None, leaves=b"", metadata=b"{}",
                  **header) -> bytes:
    """A PMTiles v3 file: tiles {(z, x, y): data} in the root directory, or the given
    (gzipped) root and leaf directories; header fields override the usual ones."""
    import gzip

    from pmtiles.tile import (Compression, Entry, TileType, serialize_directory,
                              serialize_header, zxy_to_tileid)

    tiles = tiles or {}
    entries, data = [], b""
    for key in sorted(tiles, key=lambda k: zxy_to_tileid(*k)):
        entries.append(Entry(zxy_to_tileid(*key), len(data), len(tiles[key]), 1))
        data += tiles[key]
    root = serialize_directory(entries) if root is None else root
    metadata = gzip.compress(metadata, mtime=0)
    at = 127
    fields = {
        "version": 3, "root_offset": at, "root_length": len(root),
        "metadata_offset": at + len(root), "metadata_length": len(metadata),
        "leaf_directory_offset": at + len(root) + len(metadata),
        "leaf_directory_length": len(leaves),
        "tile_data_offset": at + len(root) + len(metadata) + len(leaves),
        "tile_data_length": len(data), "addressed_tiles_count": len(tiles),
        "tile_entries_count": len(tiles), "tile_contents_count": len(tiles),
        "clustered": True, "internal_compression": Compression.GZIP,
        "tile_compression": Compression.NONE, "tile_type": TileType.PNG,
        "min_zoom": 0, "max_zoom": 3, "min_lon_e7": 144_000_000, "min_lat_e7": 460_000_000,
        "max_lon_e7": 146_000_000, "max_lat_e7": 461_000_000, "center_zoom": 3,
        "center_lon_e7": 145_000_000, "center_lat_e7": 460_500_000, **header}
    return serialize_header(fields) + root + metadata + leaves + data


@pytest.mark.parametrize("name, data, words", [
    ("v2", b"PM\x02\x00" + bytes(600), "PMTiles version 2; geoheat reads version 3 "
                                       "(convert it: pmtiles convert)"),
    ("v4", b"PMTiles\x04" + bytes(600), "PMTiles version 4; geoheat reads version 3"),
    ("png", noise_png(0), "not a PMTiles file (no PMTiles header)"),
    ("short", b"PMTiles\x03" + bytes(20), "its header lies beyond the end of the file"),
    ("bomb", pmtiles_bytes(root=__import__("gzip").compress(bytes(64 * 2**20))),
     "its root directory inflates beyond 8 MiB (damaged, or a decompression bomb)"),
    ("cut", pmtiles_bytes({(0, 0, 0): noise_png(0)})[:140],
     "its root directory lies beyond the end of the file"),
    ("garbage root", pmtiles_bytes(root=b"\x1f\x8b not gzip"), "its root directory is damaged"),
    ("bounds", pmtiles_bytes(min_lat_e7=-950_000_000), "its header's bounds are not on Earth"),
    ("zooms", pmtiles_bytes(min_zoom=9, max_zoom=3), "its header's zooms are not zooms 0-30"),
])
def test_a_damaged_pmtiles_file_is_refused_in_one_line(tmp_path, monkeypatch, name, data, words):
    path = tmp_path / "h.pmtiles"
    path.write_bytes(data)
    code, lines = refusal(path, monkeypatch)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"geoheat: error: {path}: ")
    assert words in lines[0]


def test_pmtiles_metadata_that_is_no_object_leaves_the_name_to_the_file(tmp_path):
    for metadata in (b"[1, 2]", b"not json", b'{"name": 5}'):
        path = tmp_path / "h.pmtiles"
        path.write_bytes(pmtiles_bytes({(0, 0, 0): noise_png(0)}, metadata=metadata))
        meta = PMTilesFile(path).meta()
        assert meta["name"] == "h" and meta["bounds"] == [14.4, 46.0, 14.6, 46.1]
        json.dumps(meta, allow_nan=False)


def test_a_pmtiles_leaf_directory_bomb_is_a_500_inflated_once(tmp_path, monkeypatch, capfd):
    """Each request inflated the bomb again (6-22 s, 0.8 GB): now a bounded inflate,
    once; its tiles are 500 and the others are served."""
    import gzip

    from pmtiles.tile import Entry, serialize_directory, zxy_to_tileid

    bomb = gzip.compress(bytes(64 * 2**20))
    png = noise_png(1)
    # Tiles of ids 0-20 in a leaf (the bomb); tile 3/7/7 (its id well above) in the root.
    good = zxy_to_tileid(3, 7, 7)
    root = serialize_directory([Entry(0, 0, len(bomb), 0), Entry(good, 0, len(png), 1)])
    path = tmp_path / "h.pmtiles"
    path.write_bytes(pmtiles_bytes(root=root, leaves=bomb) + png)
    inflated = []
    real = PMTilesFile._inflate

    def spy(self, data, compressed, limit, what):
        inflated.append(what)
        return real(self, data, compressed, limit, what)

    monkeypatch.setattr(PMTilesFile, "_inflate", spy)
    with running(PMTilesFile(path)) as server:
        for _ in range(3):
            assert get(server, "/heat/0/0/0.png")[:3:2] == (500, b"damaged tile\n")
            assert get(server, "/heat/1/1/0.png")[0] == 500  # the same leaf
            assert get(server, "/heat/3/7/7.png")[::2] == (200, png)
    assert sum("directory at" in what for what in inflated) == 1
    err = capfd.readouterr().err
    assert "inflates beyond 8 MiB" in err and "Traceback" not in err


def test_a_pmtiles_file_cut_short_while_served_is_a_500_not_a_crash(tmp_path):
    """It was mapped into memory: reading a tile beyond its new end killed the server
    (SIGBUS). Read with pread, sizes checked: a 500, and serving goes on."""
    big = noise_png(2, size=96)  # ~37 KB: pages beyond the cut
    path = tmp_path / "h.pmtiles"
    path.write_bytes(pmtiles_bytes({(0, 0, 0): big, (1, 0, 0): noise_png(3)}))
    process, url, _ = start_command(path, "--port", "0")
    try:
        assert ask(url, "/heat/0/0/0.png") == (200, big)
        os.truncate(path, path.stat().st_size - len(big) // 2)
        assert ask(url, "/heat/0/0/0.png") == (500, b"damaged tile\n")
        assert ask(url, "/meta.json")[0] == 200
    finally:
        rest = stopped(process)
    assert process.returncode == 0, rest
    assert "cut short since it was opened" in rest and "Traceback" not in rest
