"""bytecache: the renderer's caches are bounded in bytes."""

from geoheat.bytecache import BytesLRU
from geoheat.options import BuildOptions

from .serving import SAMPLES, ZOOM, renderer_for


def test_caches_are_bounded_in_bytes():
    lru = BytesLRU(1000)
    for i in range(50):
        lru.put(i, b"x" * 300)
    assert lru.bytes <= 1000 and len(lru.items) == 3 and lru.get(49) and lru.get(0) is None
    lru.put("huge", b"x" * 5000)  # larger than the whole cache: not kept
    assert lru.get("huge") is None and lru.bytes <= 1000
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]), tile_cache_bytes=20_000,
                            level_cache_bytes=30_000)
    for zoom in range(10, 17):
        for x, y in renderer.lit_tiles(zoom):
            renderer.png_tile(zoom, x, y)
    assert 0 < renderer.pngs.bytes <= 20_000
    assert 0 < renderer.levels.bytes <= 30_000 or len(renderer.levels.items) == 1
    small = renderer_for(BuildOptions(inputs=[SAMPLES]), selection_cache_bytes=1)
    for year in (2023, 2024, 2025):
        small.png_tile(ZOOM, *small.lit_tiles(ZOOM)[0], small.view(years=[year]))
    assert len(small.selections.items) == 1  # only the newest, however large
