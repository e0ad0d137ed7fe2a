"""The sample tracks in gpx/ are made by geoheat.samples, and make a heatmap."""

from pathlib import Path

import geoheat
from geoheat.samples import make_samples

SHIPPED = Path(__file__).resolve().parents[1] / "gpx"


def test_shipped_samples_are_exactly_what_the_generator_writes(tmp_path):
    made = make_samples(tmp_path)
    shipped = sorted(SHIPPED.glob("*.gpx"))
    assert [p.name for p in shipped] == sorted(p.name for p in made)
    for path in shipped:
        assert path.read_bytes() == (tmp_path / path.name).read_bytes(), path.name
    assert sum(p.stat().st_size for p in shipped) < 5e6


def test_samples_build_with_a_gradient_and_leave_out_the_holiday(tmp_path):
    result = geoheat.build([SHIPPED], tmp_path / "h.png", zoom=14)
    holiday = geoheat.read_gpx(next(SHIPPED.glob("*Holiday*.gpx")))
    assert result.points_outside == holiday.points
    assert result.files_read == len(list(SHIPPED.glob("*.gpx")))
    rides = geoheat.build([SHIPPED], tmp_path / "r.png", pattern="*Ride.gpx", zoom=13)
    assert 0 < rides.points_used < result.points_used
