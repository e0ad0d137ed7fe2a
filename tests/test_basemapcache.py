"""The basemap's tile cache: how long a tile stays fresh."""

from geoheat import basemapcache


def test_expiry_headers():
    now = 1_000_000.0
    assert basemapcache.expiry({"Cache-Control": "public, max-age=600"}, now) == now + 600
    assert basemapcache.expiry({"Cache-Control": "no-store"}, now) is None
    assert basemapcache.expiry({"Cache-Control": "no-cache"}, now) == now
    assert basemapcache.expiry({"Expires": "Thu, 01 Jan 1970 00:16:40 GMT"}, now) == 1000.0
    assert basemapcache.expiry({"Expires": "garbage"}, now) == now
    assert basemapcache.expiry({}, now) == now + 7 * 24 * 3600
