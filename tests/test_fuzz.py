"""A fast, seeded subset of bench/fuzz_inputs.py: mutated real files never crash
parse_file, never hang it, never lose the points before a break, and every failure
is one line naming the file."""

import importlib.util
from pathlib import Path

import pytest

from .conftest import SHARED_DATA, shared_folder

HARNESS = Path(__file__).resolve().parents[1] / "bench" / "fuzz_inputs.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_inputs", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [7, 8])
def test_mutated_real_files_are_read_or_skipped_with_a_reason(fuzz, seed):
    shared_folder("fit-tcx")
    # Small real files of every format: the subset runs in a few seconds.
    sources = sorted(p for p in (SHARED_DATA / "fit-tcx").iterdir() if p.stat().st_size < 300_000)
    sources += sorted((SHARED_DATA / "gpx-variety").glob("*.gpx"))
    sources += sorted((SHARED_DATA / "garmin-tree" / "GPX_OUT").glob("*.gpx"),
                      key=lambda p: p.stat().st_size)[:3]
    figures = fuzz.run(files=100, seed=seed, time_limit=20, sources=sources, in_process=True)
    report = "\n".join(figures.lines())
    assert figures.tried == 100
    assert not figures.crashes, report  # no exception escapes parse_file
    assert not figures.hangs, report
    assert not figures.bad_messages, report  # one line, naming the file
    assert not figures.data_lost, report
    assert not figures.contained, report  # no reader raised anything but GPXError
    assert figures.read and figures.skipped and figures.partial, report


@pytest.mark.parametrize("seed", [3, 4])
def test_mutated_fit_files_never_draw_a_position_off_the_track(fuzz, seed):
    """Issue 19: one changed byte made the reader walk on out of step and draw positions
    thousands of km off. Mutated real FIT files (bytes flipped or set, a header changed,
    chunks deleted or duplicated) against each original: no position > 1 km off."""
    folder = shared_folder("fit-tcx")
    sources = sorted(p for p in folder.glob("*.fit") if p.stat().st_size < 300_000)
    figures = fuzz.run(files=150, seed=seed, time_limit=20, sources=sources, in_process=True)
    report = "\n".join(figures.lines())
    assert figures.tried == 150 and figures.fit_read > 50, report
    assert not figures.off_track, report
    assert not figures.crashes and not figures.hangs and not figures.bad_messages, report
