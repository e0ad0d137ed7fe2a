"""Privacy settings as a user gives them: zones (text, a file) and hidden ends, checked."""

import pytest

from geoheat import privacy_settings
from geoheat.errors import ParameterError
from geoheat.options import BuildOptions
from geoheat.privacy_settings import Zone


def test_zone_text_and_files_are_checked(tmp_path):
    assert privacy_settings.parse_zone("30.5,104.1") == Zone(30.5, 104.1, 200)
    assert privacy_settings.parse_zone(" 30.5 , 104.1 , 350 ") == Zone(30.5, 104.1, 350)
    for bad, why in (("30.5", "expected LAT,LON"), ("a,b", "expected LAT,LON"),
                     ("95,10", "latitude"), ("30,10,0", "radius"), ("30,10,9000", "radius")):
        with pytest.raises(ParameterError, match=why):
            privacy_settings.parse_zone(bad)
    zones = tmp_path / "zones.txt"
    zones.write_text("# home\n30.5,104.1\n\n30.6,104.2,400  # work\n")
    assert privacy_settings.read_zone_file(zones) == (Zone(30.5, 104.1), Zone(30.6, 104.2, 400))
    zones.write_text("30.5,104.1\n30.6;104.2\n")
    with pytest.raises(ParameterError, match=r"zones.txt line 2: expected LAT,LON"):
        privacy_settings.read_zone_file(zones)
    with pytest.raises(ParameterError, match="cannot read the privacy file"):
        BuildOptions(inputs=[tmp_path], privacy_file=tmp_path / "missing.txt")
    with pytest.raises(ParameterError, match="hide ends"):
        BuildOptions(inputs=[tmp_path], hide_ends=-5)
