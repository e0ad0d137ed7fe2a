"""The README's Python example runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    (tmp_path / "gpx").symlink_to(ROOT / "gpx")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    grid = namespace["grid"]
    tile_keys = {(t.x, t.y) for t in namespace["tiles"].grid_tiles(grid)}
    assert namespace["counts"] and set(namespace["counts"]) <= tile_keys
    assert namespace["heatmap"].shape == (grid.height, grid.width)
    assert 0 < namespace["heatmap"].max() <= 1
    assert (tmp_path / "heatmap-2024-heat.tif").exists()
