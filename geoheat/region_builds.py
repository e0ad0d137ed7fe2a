"""--extent regions: the regions the kept activities visit, named after their biggest
town; one build's options per region (its --bounds the region's, its outputs named
after the place: heatmap-lisbon.png); the regions' results merged into one.

pipeline.run reads the inputs once and runs one build per region with these.
"""

from collections import Counter

import numpy as np

from .extent import regions
from .formats import UNTYPED
from .places import name_area, slugify, unique_slugs
from .projection import unproject
from .report import BuildResult, RegionEntry


def named_regions(kept, named=False) -> list[RegionEntry]:
    """The regions the kept activities visit, the busiest first, named after their
    biggest town (only if there are several, or named: the gazetteer takes ~0.15 s)."""
    areas = regions([a.summary for a in kept])
    if len(areas) < 2 and not named:
        return []
    entries = []
    for area in areas:
        corners = unproject(np.array([[area.bounds.left, area.bounds.bottom],
                                      [area.bounds.right, area.bounds.top]]))
        lonlat = tuple(float(v) for v in corners.ravel())
        place = name_area(*lonlat)
        entries.append(RegionEntry(place.name, len(area.activities), lonlat, [], place.where))
    return entries


def region_options(options, found: list[RegionEntry]) -> list:
    """One BuildOptions per region found: its --bounds the region's, each output named
    after its place (heatmap-lisbon.png), no report (the set has one)."""
    slugs = unique_slugs([slugify(r.name.rsplit(",", 1)[0]) for r in found])

    def named(path, slug):
        return None if path is None else path.with_name(f"{path.stem}-{slug}{path.suffix}")

    pad = 1e-7  # degrees (1 cm): the box's edge points stay inside after the round trip
    # The explorer tiles count every activity whatever the extent: made once, by the
    # first region's build (each region's build selects all the activities).
    return [options.replace(output=named(options.output, slug), report=None,
                            mbtiles=named(options.mbtiles, slug),
                            pmtiles=named(options.pmtiles, slug), extent="auto",
                            explorer=options.explorer if i == 0 else None,
                            bounds=(region.bounds[1] - pad, region.bounds[3] + pad,
                                    region.bounds[0] - pad, region.bounds[2] + pad))
            for i, (region, slug) in enumerate(zip(found, slugs))]


def merged(results: list[BuildResult], kept_points: int) -> BuildResult:
    """The regions' results as one: an activity drawn in any region is drawn, one in
    none is outside the extent; the points used in all of them."""
    result = results[0]
    entries = {}
    for each in results:
        for entry in each.entries:
            if entry.path not in entries or entry.status == "drawn":
                entries[entry.path] = entry
    result.entries = list(entries.values())
    drawn = [e for e in result.entries if e.status == "drawn"]
    result.types = Counter(e.type or UNTYPED for e in drawn)
    result.formats = Counter(e.format for e in drawn)
    outside = sum(e.status == "left_out" and e.reason == "outside the extent"
                  for e in result.entries)
    result.left_out.pop("outside the extent", None)
    if outside:
        result.left_out["outside the extent"] = outside
    result.points_used = sum(each.points_used for each in results)
    # Each region's build hides the same points (privacy is measured on every whole
    # activity, whatever the box): results[0] has them once.
    result.points_outside = max(0, kept_points - result.points_used - result.points_hidden)
    result.outputs = [p for each in results for p in each.outputs]
    return result
