"""activities.csv read alone: its dates and what it refuses (through find_sources: test_sources)."""

from datetime import datetime, timezone

import pytest

from geoheat.export_index import parse_strava_date, read_export_index


@pytest.mark.parametrize("text, expected", [
    ("Feb 17, 2019, 6:26:44 AM", (2019, 2, 17, 6, 26, 44)),
    ("Feb 17, 2019, 12:05:00 AM", (2019, 2, 17, 0, 5, 0)),
    ("Feb 17, 2019, 6:26:44 PM", (2019, 2, 17, 18, 26, 44)),
    ("2018-06-08 18:28:52", (2018, 6, 8, 18, 28, 52)),
    ("17 Feb 2019, 06:26:44", (2019, 2, 17, 6, 26, 44)),
    ("17 févr. 2019, 06:26:44", (2019, 2, 17, 6, 26, 44)),
    ("17.02.2019, 06:26:44", (2019, 2, 17, 6, 26, 44)),
    ("2/17/2019 6:26", (2019, 2, 17, 6, 26, 0)),
    ("17 févr. 2019 à 6:26:44 p. m.", (2019, 2, 17, 18, 26, 44)),
    ("17 de feb. de 2019, 6:26:44", (2019, 2, 17, 6, 26, 44)),
    ("2019/02/17 오후 6:26:44", (2019, 2, 17, 18, 26, 44)),
    ("2019年2月17日 下午6:26:44", (2019, 2, 17, 18, 26, 44)),
    ("17 Dez. 2019, 06:26:44", (2019, 12, 17, 6, 26, 44)),
    ("2024-05-01t10:00:00z", (2024, 5, 1, 10, 0, 0)),  # RFC 3339, lower case
    ("2024-05-01 10:00:00Z", (2024, 5, 1, 10, 0, 0)),
    ("03/04/2019 06:26", None),  # March or April: the file's own time decides
    ("", None), ("yesterday", None)])
def test_strava_dates(text, expected):
    parsed = parse_strava_date(text)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == datetime(*expected, tzinfo=timezone.utc)


def test_read_export_index_refuses_what_it_cannot_understand():
    with pytest.raises(ValueError):
        read_export_index("a,b\n1,2\n")
