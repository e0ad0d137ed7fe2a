"""Make the sample rides and runs in gpx/: plausible tracks on a made-up street network.

    python -m geoheat.samples gpx/

The network is a jittered grid of streets with a few popular roads (a river path
and two avenues) that most activities use, so the demo heatmap shows a gradient
from quiet side streets to busy corridors. One holiday ride lies far away, to show
the default extent keeping to the home area. Same seed, same files.
"""

import heapq
import math
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

HOME = (14.505, 46.051)  # lon, lat of the made-up town's centre
HOLIDAY = (13.63, 45.55)  # a coast about 80 km away
STREET_SPACING_M = 450.0
GRID_SIZE = 14  # streets a side
METRES_PER_DEGREE = 111_320.0


def gpx_document(segments, name=None, activity_type=None, start=None, times=None) -> str:
    """A GPX 1.1 document with one track; segments are (n, 2) lon, lat arrays.

    times, if given, is one sequence of datetimes per segment.
    """
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<gpx version="1.1" creator="geoheat samples" xmlns="http://www.topografix.com/GPX/1/1">']
    if start is not None:
        out.append(f"  <metadata><time>{_iso(start)}</time></metadata>")
    out.append("  <trk>")
    if name:
        out.append(f"    <name>{escape(name)}</name>")
    if activity_type:
        out.append(f"    <type>{escape(activity_type)}</type>")
    for i, segment in enumerate(segments):
        out.append("    <trkseg>")
        for j, (lon, lat) in enumerate(np.asarray(segment, dtype=float)):
            when = f"<time>{_iso(times[i][j])}</time>" if times is not None else ""
            out.append(f'      <trkpt lat="{lat:.6f}" lon="{lon:.6f}">{when}</trkpt>')
        out.append("    </trkseg>")
    out += ["  </trk>", "</gpx>", ""]
    return "\n".join(out)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def street_network(rng, centre, size=GRID_SIZE, spacing=STREET_SPACING_M):
    """Nodes (lon, lat) and weighted edges {(a, b): popularity} of a jittered street grid."""
    lon0, lat0 = centre
    m_lon = METRES_PER_DEGREE * math.cos(math.radians(lat0))
    nodes = {}
    for i in range(size):
        for j in range(size):
            dx = (i - size / 2) * spacing + rng.normal(0, spacing * 0.12)
            dy = (j - size / 2) * spacing + rng.normal(0, spacing * 0.12)
            nodes[(i, j)] = (lon0 + dx / m_lon, lat0 + dy / METRES_PER_DEGREE)
    edges = {}
    for (i, j) in nodes:
        for (di, dj) in ((1, 0), (0, 1)):
            other = (i + di, j + dj)
            if other not in nodes:
                continue
            popularity = 1.0
            if j == size // 2 and dj == 0:  # the river path, east-west
                popularity = 12.0
            elif i in (3, size - 4) and di == 0:  # two north-south avenues
                popularity = 5.0
            edges[(i, j), other] = edges[other, (i, j)] = popularity
    return nodes, edges


def _length(nodes, a, b):
    (lon1, lat1), (lon2, lat2) = nodes[a], nodes[b]
    m_lon = METRES_PER_DEGREE * math.cos(math.radians(lat1))
    return math.hypot((lon2 - lon1) * m_lon, (lat2 - lat1) * METRES_PER_DEGREE)


def _neighbours(edges):
    table = {}
    for (a, b), popularity in edges.items():
        table.setdefault(a, []).append((b, popularity))
    return table


def _shortest_path(nodes, neighbours, start, goal):
    """Dijkstra where popular roads are cheaper, as riders prefer them."""
    queue, best, previous = [(0.0, start)], {start: 0.0}, {}
    while queue:
        cost, node = heapq.heappop(queue)
        if node == goal:
            break
        if cost > best.get(node, math.inf):
            continue
        for other, popularity in neighbours[node]:
            new = cost + _length(nodes, node, other) / math.sqrt(popularity)
            if new < best.get(other, math.inf):
                best[other], previous[other] = new, node
                heapq.heappush(queue, (new, other))
    path = [goal]
    while path[-1] != start:
        path.append(previous[path[-1]])
    return path[::-1]


def route(rng, nodes, neighbours, home, distance_m):
    """Node sequence of a loop from home: a popularity-weighted wander, then back."""
    path, travelled = [home], 0.0
    while travelled < distance_m / 2:
        # No U-turns, unless the street ends.
        options = [(n, p) for n, p in neighbours[path[-1]] if len(path) < 2 or n != path[-2]]
        options = options or neighbours[path[-1]]
        weights = np.array([p for _, p in options])
        nxt = options[rng.choice(len(options), p=weights / weights.sum())][0]
        travelled += _length(nodes, path[-1], nxt)
        path.append(nxt)
    return path + _shortest_path(nodes, neighbours, path[-1], home)[1:]


def sample_track(rng, nodes, path, speed_ms, interval_s, noise_m=3.0):
    """(n, 2) lon, lat positions every interval_s along a node path, with GPS noise."""
    coords = np.array([nodes[n] for n in path])
    m_lon = METRES_PER_DEGREE * math.cos(math.radians(coords[0, 1]))
    metres = (coords - coords[0]) * [m_lon, METRES_PER_DEGREE]
    along = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(metres, axis=0).T))])
    at = np.arange(0, along[-1], speed_ms * interval_s)
    x = np.interp(at, along, metres[:, 0]) + rng.normal(0, noise_m, len(at))
    y = np.interp(at, along, metres[:, 1]) + rng.normal(0, noise_m, len(at))
    return coords[0] + np.column_stack([x / m_lon, y / METRES_PER_DEGREE])


def make_samples(folder: Path, count: int = 36, seed: int = 2024) -> list[Path]:
    """Write `count` sample activities (plus one holiday ride) into folder."""
    rng = np.random.default_rng(seed)
    nodes, edges = street_network(rng, HOME)
    neighbours = _neighbours(edges)
    homes = [(2, 2), (GRID_SIZE - 3, GRID_SIZE // 2 + 2), (GRID_SIZE // 2, 3)]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(count + 1):
        holiday = k == count
        kind = "Ride" if holiday or rng.random() < 0.65 else "Run"
        year = 2023 + k % 3
        day = datetime(year, 1, 1, tzinfo=timezone.utc) + timedelta(
            days=int(rng.integers(60, 300)), hours=int(rng.choice([6, 12, 17])))
        if holiday:
            hnodes, hedges = street_network(rng, HOLIDAY, size=6)
            track_nodes, track_neighbours, home = hnodes, _neighbours(hedges), (2, 2)
        else:
            track_nodes, track_neighbours, home = nodes, neighbours, homes[k % len(homes)]
        speed, interval, distance = ((rng.uniform(6, 8), 4, rng.uniform(12e3, 30e3))
                                     if kind == "Ride" else
                                     (rng.uniform(2.7, 3.4), 5, rng.uniform(5e3, 11e3)))
        path = route(rng, track_nodes, track_neighbours, home, distance)
        track = sample_track(rng, track_nodes, path, speed, interval)
        times = [[day + timedelta(seconds=interval * i) for i in range(len(track))]]
        part = {6: "Morning", 12: "Lunch", 17: "Evening"}[day.hour]
        name = f"{part} {kind}"
        path_out = folder / f"{day:%Y-%m-%d}-{part}-{kind}{'-Holiday' if holiday else ''}.gpx"
        path_out.write_text(gpx_document([track], name, kind.lower(), day, times))
        written.append(path_out)
    return written


def main(argv=None):
    """Write the samples into the folder named on the command line (default gpx/)."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "gpx")
    paths = make_samples(folder)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} GPX files, {size / 1e6:.1f} MB, to {folder}")


if __name__ == "__main__":
    main()
