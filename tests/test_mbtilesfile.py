"""An MBTiles file served as it is (geoheat.mbtilesfile); a damaged one refused at start
in one line, or a 500 for the bad tile while the rest is served (issue 19)."""

import contextlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import geoheat
from geoheat.mbtilesfile import MBTilesFile
from geoheat.render import EMPTY_PNG

from .serving import (SAMPLES, ZOOM, ask, get, noise_png, refusal, running, start_command,
                      stopped)


@pytest.fixture(scope="module")
def built_mbtiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("built")
    geoheat.build([SAMPLES], folder / "h.png", zoom=ZOOM, mbtiles=folder / "h.mbtiles",
                  min_zoom=ZOOM - 2, max_zoom=ZOOM)
    return folder / "h.mbtiles"


def test_an_mbtiles_file_is_served_as_it_is(built_mbtiles):
    with contextlib.closing(sqlite3.connect(built_mbtiles)) as db:
        z, x, row, data = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data "
                                     "FROM tiles WHERE zoom_level = ?", (ZOOM,)).fetchone()
    with running(MBTilesFile(built_mbtiles)) as server:
        status, headers, body = get(server, f"/heat/{z}/{x}/{2**z - 1 - row}.png")
        assert status == 200 and body == data and headers["Content-Type"] == "image/png"
        assert get(server, f"/heat/{z}/{x}/{2**z - 1 - row}.png",
                   {"If-None-Match": headers["ETag"]})[0] == 304
        assert get(server, "/heat/0/0/0.png")[2] == EMPTY_PNG  # no such tile: transparent
        assert get(server, f"/heat/{z}/{x}/{2**z - 1 - row}.png?c=hot")[0] == 404
        meta = json.loads(get(server, "/meta.json")[2])
        assert not meta["dynamic"] and (meta["minzoom"], meta["maxzoom"]) == (ZOOM - 2, ZOOM)
        assert b'"dynamic": false' in get(server, "/")[2]


def test_serve_command_serves_an_mbtiles_file(built_mbtiles):
    process, url, _ = start_command(built_mbtiles, "--port", "0")
    try:
        with contextlib.closing(sqlite3.connect(built_mbtiles)) as db:
            z, x, row, data = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data "
                                         "FROM tiles LIMIT 1").fetchone()
        assert ask(url, f"/heat/{z}/{x}/{2**z - 1 - row}.png") == (200, data)
    finally:
        stopped(process)
    assert process.returncode == 0


def mbtiles_file(path: Path, metadata: dict, tiles: dict) -> Path:
    """An MBTiles file of tiles {(z, x, y): data} (XYZ rows) with this metadata."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", metadata.items())
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, "
                   "tile_row INTEGER, tile_data BLOB)")
        db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                       [(z, x, 2**z - 1 - y, data) for (z, x, y), data in tiles.items()])
        db.commit()
    return path


GOOD_METADATA = {"name": "heat", "format": "png", "minzoom": "3", "maxzoom": "3",
                 "bounds": "14.4,46.0,14.6,46.1"}
TILE_KEYS = [(3, x, y) for x in range(8) for y in range(8)]


@pytest.mark.parametrize("change, words", [
    ({"minzoom": "abc"}, "its metadata's minzoom is not a zoom 0-30: 'abc'"),
    ({"maxzoom": "15.5"}, "its metadata's maxzoom is not a zoom 0-30: '15.5'"),
    ({"minzoom": "9"}, "its metadata's minzoom 9 is above its maxzoom 3"),
    ({"bounds": "nan,nan,nan,nan"}, "its metadata's bounds are not west,south,east,north"),
    ({"bounds": "14.4,46.0,14.6"}, "its metadata's bounds are not west,south,east,north"),
    ({"bounds": "14.4,46.0,194.6,46.1"}, "its metadata's bounds are not west,south,east,north"),
])
def test_an_mbtiles_file_with_unusable_metadata_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                        change, words):
    path = mbtiles_file(tmp_path / "h.mbtiles", {**GOOD_METADATA, **change},
                        {TILE_KEYS[0]: noise_png(0)})
    code, lines = refusal(path, monkeypatch)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"geoheat: error: {path}: {words}")


@pytest.mark.parametrize("damage, words", [
    ("DROP TABLE tiles", "no such table: tiles"),
    ("ALTER TABLE tiles RENAME COLUMN tile_data TO data", "no such column: tile_data"),
    ("DROP TABLE metadata", "no such table: metadata"),
    ("UPDATE tiles SET zoom_level = 'x'; DELETE FROM metadata WHERE name LIKE '%zoom'",
     "damaged (a tile's zoom_level is not a zoom 0-30)"),
])
def test_an_mbtiles_file_without_its_tables_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                    damage, words):
    path = mbtiles_file(tmp_path / "h.mbtiles", GOOD_METADATA, {TILE_KEYS[0]: noise_png(0)})
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(damage)
    code, lines = refusal(path, monkeypatch)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"geoheat: error: {path}: ")
    assert words in lines[0]


def test_without_zooms_in_its_metadata_an_mbtiles_file_has_its_tiles_zooms(tmp_path):
    metadata = {k: v for k, v in GOOD_METADATA.items() if "zoom" not in k}
    path = mbtiles_file(tmp_path / "h.mbtiles", metadata,
                        {(2, 1, 1): noise_png(0), (5, 3, 3): noise_png(1)})
    meta = MBTilesFile(path).meta()
    assert (meta["minzoom"], meta["maxzoom"], meta["bounds"]) == (2, 5, [14.4, 46.0, 14.6, 46.1])


def test_damaged_mbtiles_tiles_are_500_and_the_rest_is_served(tmp_path, capfd):
    """Garbage pages in the tiles' part of the file, a tile that is no blob (bytes(5) made
    five zero bytes of it): 500 for those, one line each, the others served."""
    tiles = {key: noise_png(i) for i, key in enumerate(TILE_KEYS)}
    path = mbtiles_file(tmp_path / "h.mbtiles", GOOD_METADATA, tiles)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE tiles SET tile_data = 5 WHERE zoom_level = 3 AND tile_column = 0 "
                   "AND tile_row = 7")  # 3/0/0
        db.commit()
    data = bytearray(path.read_bytes())
    half = len(data) // 2 // 4096 * 4096
    data[half:] = np.random.default_rng(7).integers(0, 256, len(data) - half,
                                                    dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    source = MBTilesFile(path)  # opens: metadata and schema are in the first pages
    with running(source) as server:
        answers = {key: get(server, "/heat/{}/{}/{}.png".format(*key)) for key in TILE_KEYS}
        assert get(server, "/meta.json")[0] == 200  # still serving
    assert answers[3, 0, 0][:3:2] == (500, b"damaged tile\n")
    statuses = {status for status, _, _ in answers.values()}
    assert statuses == {200, 500}
    for key, (status, _, body) in answers.items():
        assert status == 500 and body == b"damaged tile\n" or body == tiles[key], key
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: tile 3/0/0 is no image (an integer, not a blob)" in err
    assert err.count("geoheat: error: ") == sum(s == 500 for s, _, _ in answers.values())
