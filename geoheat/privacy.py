"""Privacy zones: circles where nothing of any activity is drawn, and hidden ends.

A heat map shared online shows where its owner starts and ends: home, work. A zone
(a centre and a radius in metres on the ground) hides every line inside it: the counts
leave out the samples of each line that fall inside (SampleFilter, asked by
rasterize.line_pixels), so a line stops at the edge, no straight jump is drawn across
the zone, and outside the zones every pixel is as it was; the explorer tiles follow
the lines cut at the edges (hide). `hide_ends` hides the first and last metres of every
activity the same way.

Zones as a user gives them are checked in privacy_settings. `--privacy auto` finds
the zones from the activities' starts and ends (AUTO_RULE); nothing in any output
says where a zone is: the report gives counts only.

Pure functions over the (n, 2) EPSG:3857 points and segment offsets the readers give.
"""

import math
from typing import NamedTuple

import numpy as np

from .privacy_settings import MAX_RADIUS, Zone

EARTH_RADIUS = 6378137.0  # tiles.EARTH_RADIUS, without importing affine
# --privacy auto: a zone around each place where at least AUTO_MIN_ACTIVITIES activities,
# and AUTO_MIN_SHARE of all those drawn, start or end within AUTO_RADIUS metres of one of
# their starts or ends; the zone is centred on those starts and ends and covers them all
# with AUTO_MARGIN to spare (at least AUTO_RADIUS). Auto also hides AUTO_HIDE_ENDS metres
# at each end of every activity unless --hide-ends says otherwise.
AUTO_MIN_ACTIVITIES = 5
AUTO_MIN_SHARE = 0.10
AUTO_RADIUS = 200.0
AUTO_MARGIN = 50.0
AUTO_HIDE_ENDS = 200.0
AUTO_RULE = (f"a zone around every place where at least {AUTO_MIN_ACTIVITIES} activities, and "
             f"{AUTO_MIN_SHARE:.0%} of them, start or end within {AUTO_RADIUS:g} m")

# Said once by a build that writes tiles or a site to share without any privacy option.
SHARE_HINT = ("tiles and sites are made to be shared: --privacy auto (or --privacy-zone "
              "LAT,LON[,RADIUS_M]) keeps the places you start and end off the map")


class Privacy(NamedTuple):
    """What a build hides: zones, and the metres at each end of every activity."""

    zones: tuple[Zone, ...] = ()
    hide_ends: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.zones) or self.hide_ends > 0


class Shown(NamedTuple):
    """An activity with its hidden parts cut out."""

    xy: np.ndarray  # (m, 2): the points kept and the points where a line meets a zone's edge
    offsets: np.ndarray  # their segments
    times: np.ndarray | None  # POSIX seconds (interpolated at the cuts), or None
    original: np.ndarray  # (m,) bool: the point is one of the activity's own
    hidden: int  # the activity's own points hidden


# --- finding zones ------------------------------------------------------------------------


def _mercator(lat: np.ndarray | float, lon: np.ndarray | float):
    x = np.radians(lon) * EARTH_RADIUS
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * EARTH_RADIUS
    return x, y


def _lat_lon(x: float, y: float) -> tuple[float, float]:
    lat = math.degrees(2 * math.atan(math.exp(y / EARTH_RADIUS)) - math.pi / 2)
    return lat, math.degrees(x / EARTH_RADIUS)


def auto_zones(ends: np.ndarray) -> tuple[Zone, ...]:
    """The zones AUTO_RULE finds among activities' ends: ends is (n, 2, 2), each
    activity's first and last EPSG:3857 point. Greedy: the place with the most
    activities first, its ends then taken out, until no place passes the rule."""
    ends = np.asarray(ends, dtype=float).reshape(-1, 2, 2)
    n = len(ends)
    if n < AUTO_MIN_ACTIVITIES:
        return ()
    need = max(AUTO_MIN_ACTIVITIES, math.ceil(AUTO_MIN_SHARE * n - 1e-9))
    points = ends.reshape(-1, 2)
    activity = np.repeat(np.arange(n), 2)
    scale = np.cosh(points[:, 1] / EARTH_RADIUS)  # Web Mercator metres per ground metre
    neighbours = _within(points, AUTO_RADIUS * scale)
    left = np.ones(len(points), dtype=bool)
    zones = []
    while left.any():
        counts = np.zeros(len(points), dtype=np.int64)
        for i in np.flatnonzero(left):
            near = neighbours[i][left[neighbours[i]]]
            counts[i] = len(np.unique(activity[near]))
        best = int(np.argmax(counts))
        if counts[best] < need:
            break
        members = neighbours[best][left[neighbours[best]]]
        centre = points[members].mean(axis=0)
        ground = np.hypot(*(points[members] - centre).T) / np.cosh(centre[1] / EARTH_RADIUS)
        radius = min(max(AUTO_RADIUS, float(ground.max()) + AUTO_MARGIN), MAX_RADIUS)
        zone = Zone(*_lat_lon(*centre), radius)
        zones.append(zone)
        left &= ~in_zones(points, (zone,))
        left[members] = False
    return tuple(zones)


def _within(points: np.ndarray, reach: np.ndarray) -> list[np.ndarray]:
    """For each point, the points within its reach (itself included): a grid of cells as
    wide as the longest reach, each point against the 3 x 3 cells around its own (no
    scipy.spatial: its import alone takes a second)."""
    size = float(reach.max())
    cells = np.floor(points / size).astype(np.int64)
    members: dict[tuple[int, int], list[int]] = {}
    for i, cell in enumerate(map(tuple, cells.tolist())):
        members.setdefault(cell, []).append(i)
    members = {cell: np.array(found, dtype=np.int64) for cell, found in members.items()}
    found = []
    for i, (cx, cy) in enumerate(cells.tolist()):
        near = [members[c] for c in ((cx + dx, cy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
                if c in members]
        near = np.concatenate(near)
        close = np.hypot(*(points[near] - points[i]).T) <= reach[i]
        found.append(np.sort(near[close]))
    return found


def resolve(zones: tuple[Zone, ...], auto: bool, hide_ends: float | None,
            summaries) -> Privacy:
    """A build's Privacy: the zones given, those auto finds among the summaries' ends
    (the activities drawn), and the metres hidden at each end (None: AUTO_HIDE_ENDS
    with auto, else none)."""
    found = ()
    if auto:
        summaries = [s for s in summaries if s is not None]
        found = auto_zones(np.array([[s.first, s.last] for s in summaries]).reshape(-1, 2, 2))
    if hide_ends is None:
        hide_ends = AUTO_HIDE_ENDS if auto else 0.0
    return Privacy(tuple(zones) + found, float(hide_ends))


def of_build(options, summaries) -> Privacy | None:
    """A build's (or a server's) Privacy from its BuildOptions, auto zones found among the
    summaries of the activities it draws; None without any privacy option."""
    if not options.privacy_asked:
        return None
    return resolve(options.zones, options.privacy == "auto", options.hide_ends, summaries)


# --- hiding -------------------------------------------------------------------------------


def _circles(zones) -> tuple[np.ndarray, np.ndarray]:
    """Each zone's centre (k, 2) in EPSG:3857 and radius in its metres: Web Mercator is
    conformal, so a ground circle a few km across is a circle scaled by cosh(y / R)."""
    lat = np.array([z.lat for z in zones], dtype=float)
    lon = np.array([z.lon for z in zones], dtype=float)
    x, y = _mercator(lat, lon)
    radius = np.array([z.radius for z in zones], dtype=float) * np.cosh(y / EARTH_RADIUS)
    return np.column_stack([x, y]), radius


def in_zones(xy: np.ndarray, zones) -> np.ndarray:
    """Mask of the points strictly inside any zone."""
    hidden = np.zeros(len(xy), dtype=bool)
    if not zones:
        return hidden
    centres, radii = _circles(zones)
    for centre, radius in zip(centres, radii):
        hidden |= np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1]) < radius
    return hidden


def _distance_along(xy: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Ground metres from the activity's first point to each point, along its segments
    (a break between segments adds nothing)."""
    from .summary import ground_steps

    return np.concatenate([[0.0], np.cumsum(ground_steps(xy, offsets))])


def end_distances(xy: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n, 2): each point's ground metres along the segments from the activity's first
    point, and to its last (both linear along a step, so a sample's are interpolated)."""
    along = _distance_along(xy, offsets)
    return np.column_stack([along, along[-1] - along]) if len(xy) else np.empty((0, 2))


def hidden_points(xy: np.ndarray, ends: np.ndarray | None, privacy: Privacy) -> np.ndarray:
    """Mask of the points privacy hides: strictly inside a zone, or nearer than
    hide_ends to an end (ends: end_distances; None: no ends hidden)."""
    mask = in_zones(xy, privacy.zones)
    if ends is not None and privacy.hide_ends > 0:  # column by column: (n, 2) reduces are slow
        mask |= (ends[:, 0] < privacy.hide_ends) | (ends[:, 1] < privacy.hide_ends)
    return mask


class SampleFilter:
    """Which samples of the drawn lines privacy hides: rasterize.line_pixels samples each
    step and asks this of them. Masking samples rather than cutting the steps keeps every
    pixel outside the zones exactly as it was (a cut step would be sampled anew, and a
    line far from the zone could shift by a pixel)."""

    def __init__(self, xy: np.ndarray, ends: np.ndarray | None, privacy: Privacy):
        self.xy, self.ends, self.privacy = xy, ends, privacy
        # Steps from each point to the next that can hold a hidden sample: near a zone
        # (their bounding box within its radius) or reaching into the hidden ends.
        near = np.zeros(len(xy), dtype=bool)
        if len(xy):
            following = np.append(np.arange(1, len(xy)), len(xy) - 1)
            x, y = xy[:, 0], xy[:, 1]
            if privacy.zones:
                x_low, x_high = np.minimum(x, x[following]), np.maximum(x, x[following])
                y_low, y_high = np.minimum(y, y[following]), np.maximum(y, y[following])
                centres, radii = _circles(privacy.zones)
                for (cx, cy), radius in zip(centres, radii):
                    near |= ((x_low <= cx + radius) & (x_high >= cx - radius)
                             & (y_low <= cy + radius) & (y_high >= cy - radius))
            if ends is not None and privacy.hide_ends > 0:
                for column in (ends[:, 0], ends[:, 1]):
                    near |= np.minimum(column, column[following]) < privacy.hide_ends
        self.near = near

    def __call__(self, start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Mask of the samples hidden: sample k lies at t[k] from point start[k] to
        point end[k]."""
        mask = np.zeros(len(t), dtype=bool)
        which = np.flatnonzero(self.near[start])
        if not len(which):
            return mask
        a, b, f = start[which], end[which], t[which][:, None]
        position = self.xy[a] + f * (self.xy[b] - self.xy[a])
        ends = None if self.ends is None else self.ends[a] + f * (self.ends[b] - self.ends[a])
        mask[which] = hidden_points(position, ends, self.privacy)
        return mask


def hide(xy: np.ndarray, offsets: np.ndarray, times: np.ndarray | None,
         privacy: Privacy, lines: bool = True) -> Shown:
    """One activity with what privacy hides cut out. lines: the points are joined
    (offsets are the drawn segments, gaps already split: rasterize.split_gaps); each
    step crossing a zone's edge or an end's limit is cut there, so the line stops at
    the edge. Points mode (lines=False) only drops the hidden points."""
    xy = np.asarray(xy, dtype=float)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(xy)
    zones = privacy.zones
    centres, radii = _circles(zones) if zones else (np.empty((0, 2)), np.empty(0))
    along = _distance_along(xy, offsets) if privacy.hide_ends > 0 else None
    limits = ()
    if along is not None:
        total = along[-1] if n else 0.0
        limits = (privacy.hide_ends, total - privacy.hide_ends)

    def hidden_at(points, distance):
        mask = np.zeros(len(points), dtype=bool)
        for centre, radius in zip(centres, radii):
            mask |= np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1]) < radius
        if limits:
            mask |= (distance < limits[0]) | (distance > limits[1])
        return mask

    own_hidden = hidden_at(xy, along)
    if not lines or n < 2:
        keep = ~own_hidden
        from .rasterize import select_points

        kept, kept_offsets = select_points(xy, offsets, keep)
        return Shown(kept, kept_offsets, None if times is None else times[keep],
                     np.ones(len(kept), dtype=bool), int(own_hidden.sum()))
    # Steps i -> i + 1 inside a segment; where they cross an edge (t in (0, 1)).
    last = np.zeros(n, dtype=bool)
    last[offsets[1:][offsets[1:] > 0] - 1] = True
    step = np.flatnonzero(~last[:-1])
    p, d = xy[step], xy[step + 1] - xy[step]
    cut_step, cut_t = [], []
    for centre, radius in zip(centres, radii):
        rel = p - centre
        a = (d * d).sum(axis=1)
        b = 2 * (d * rel).sum(axis=1)
        c = (rel * rel).sum(axis=1) - radius * radius
        disc = b * b - 4 * a * c
        meets = (a > 0) & (disc > 0)
        root = np.sqrt(np.where(meets, disc, 0))
        safe_a = np.where(meets, a, 1)
        for t in ((-b - root) / (2 * safe_a), (-b + root) / (2 * safe_a)):
            ok = meets & (t > 0) & (t < 1)
            cut_step.append(step[ok])
            cut_t.append(t[ok])
    if along is not None:
        s0, s1 = along[step], along[step + 1]
        for limit in limits:
            ok = (s0 < limit) & (limit < s1)
            cut_step.append(step[ok])
            cut_t.append((limit - s0[ok]) / (s1[ok] - s0[ok]))
    cut_step = np.concatenate(cut_step) if cut_step else np.empty(0, dtype=np.int64)
    cut_t = np.concatenate(cut_t) if cut_t else np.empty(0)
    if not len(cut_step) and not own_hidden.any():
        return Shown(xy, offsets, times, np.ones(n, dtype=bool), 0)
    # Every item in order along the track: the points (t = 0) and the cuts.
    item_step = np.concatenate([np.arange(n), cut_step])
    item_t = np.concatenate([np.zeros(n), cut_t])
    order = np.lexsort((item_t, item_step))
    item_step, item_t = item_step[order], item_t[order]
    original = item_t == 0
    following = np.minimum(item_step + 1, n - 1)
    item_xy = xy[item_step] + item_t[:, None] * (xy[following] - xy[item_step])
    segment_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    item_segment = segment_of[item_step]
    # Each piece from one item to the next in the same segment lies on one step, wholly
    # inside or outside every circle and on one side of every limit: its middle says which.
    same = item_segment[1:] == item_segment[:-1]
    middle = (item_xy[1:] + item_xy[:-1]) / 2
    middle_along = None
    if along is not None:
        item_along = along[item_step] + item_t * (along[following] - along[item_step])
        middle_along = (item_along[1:] + item_along[:-1]) / 2
    drawn = same & ~hidden_at(middle, middle_along)
    into = np.concatenate([[False], drawn])  # a drawn piece ends at the item
    out_of = np.concatenate([drawn, [False]])  # a drawn piece starts at the item
    visible_point = np.zeros(len(item_step), dtype=bool)
    visible_point[original] = ~own_hidden[item_step[original]]
    keep = into | out_of | visible_point
    starts = keep & ~into  # a kept item not joined to the one before starts a segment
    new_offsets = np.append(np.flatnonzero(starts[keep]), int(keep.sum())).astype(np.int64)
    new_times = None
    if times is not None:
        item_times = times[item_step] + item_t * (times[following] - times[item_step])
        new_times = item_times[keep]
    return Shown(item_xy[keep], new_offsets, new_times, original[keep],
                 int(own_hidden.sum()))
