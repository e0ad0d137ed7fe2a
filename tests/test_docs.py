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


def test_the_library_docs_name_only_what_exists():
    """Every `module.name` (and `module.Class.member`) docs/library.md names exists."""
    import importlib

    text = (ROOT / "docs" / "library.md").read_text()
    modules = {p.stem for p in (ROOT / "geoheat").glob("*.py")}
    named = set(re.findall(r"`(?:geoheat\.)?([a-z_]+)\.([A-Za-z_][A-Za-z_.]*)", text))
    missing = []
    for module, dotted in sorted(named):
        if module not in modules:
            continue
        thing = importlib.import_module(f"geoheat.{module}")
        for part in dotted.rstrip(".").split("."):
            if not hasattr(thing, part):
                missing.append(f"{module}.{dotted}")
                break
            thing = getattr(thing, part)
    assert len(named) > 40 and not missing
    for name in re.findall(r"`geoheat\.([A-Za-z_]+)`", text):
        assert name in modules or hasattr(importlib.import_module("geoheat"), name), name
