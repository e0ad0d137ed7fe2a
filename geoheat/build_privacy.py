"""A build's privacy: the privacy.Privacy it draws with, told and recorded.

`privacy_of` is the one way to it from a build's options and kept activities, for the
build and for `geoheat serve` (render.Renderer), so both hide the same places.
"""

from .output_kinds import ARCHIVE, kinds_in


def privacy_of(options, kept):
    """The privacy.Privacy of a build with these options: the zones given and the auto
    zones found among the kept activities' ends (whatever view or extent); None without
    any privacy option."""
    if not options.privacy_asked:
        return None
    from .privacy import of_build

    return of_build(options, [a.summary for a in kept])


def build_privacy(options, kept, result, warn):
    """privacy_of, recorded in result as counts only. A build sharing tiles without it
    says once how to add one."""
    shield = privacy_of(options, kept)
    if shield is None:
        if kinds_in(options.outputs, ARCHIVE):
            from .privacy import SHARE_HINT

            warn(SHARE_HINT)
        return None
    result.privacy = {"zones": len(shield.zones), "auto_zones": len(shield.zones)
                      - len(options.zones), "hide_ends_m": shield.hide_ends,
                      "activities_touched": 0, "points_hidden": 0}
    return shield
