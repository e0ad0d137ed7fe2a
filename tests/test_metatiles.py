"""metatiles: a level's heat is made a metatile at a time, each once, whatever the
threads asking for its tiles."""

import threading

from geoheat.metatiles import METATILE
from geoheat.options import BuildOptions

from .serving import SAMPLES, ZOOM, renderer_for


def test_each_metatile_and_scale_is_made_once_under_concurrent_requests(monkeypatch):
    renderer = renderer_for(BuildOptions(inputs=[SAMPLES]))
    made, scales = [], []
    real, real_scale = renderer._metatile, renderer._scale
    monkeypatch.setattr(renderer, "_metatile",
                        lambda z, mx, my, v: made.append((z, mx, my)) or real(z, mx, my, v))
    monkeypatch.setattr(renderer, "_scale", lambda z, v: scales.append(z) or real_scale(z, v))
    keys = renderer_for(BuildOptions(inputs=[SAMPLES])).lit_tiles(ZOOM)
    threads = [threading.Thread(target=renderer.png_tile, args=(ZOOM, *key)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scales == [ZOOM]
    assert sorted(made) == sorted({(ZOOM, x // METATILE, y // METATILE) for x, y in keys})
