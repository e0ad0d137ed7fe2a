"""GPX tracks by a streaming expat parse, for what GDAL's GPX driver refuses (a file
broken off, a cut copy) or would misread (a coordinate that is not a number): every
point closed before a break is kept.
"""

import xml.parsers.expat
from typing import NamedTuple

import numpy as np

from .coordinates import COORDINATE, coordinate


class Streamed(NamedTuple):
    """What stream_tracks read."""

    segments: list[np.ndarray]
    times: list[list[bytes | None]]  # per segment, each point's time text or None
    routes: int
    waypoints: int
    sport: str | None
    error: str | None  # what broke it off, or None
    not_numbers: int = 0  # track points with a coordinate that is not a number
    example: str | None = None  # the first such coordinate, as the file has it


def stream_tracks(data: bytes) -> Streamed:
    """GPX tracks by a streaming expat parse, keeping every point closed before a break;
    a coordinate that is not a number (see coordinate) is NaN, and counted."""
    segments: list[np.ndarray] = []
    seg_times: list[list[bytes | None]] = []
    current: list[tuple[float, float]] = []
    current_times: list[bytes | None] = []
    state = {"point": None, "time": None, "text": None, "routes": 0, "waypoints": 0,
             "sport": None, "depth_trk": 0, "bad": 0, "example": None}

    def local(name: str) -> str:
        return name.rsplit(":", 1)[-1]

    def start(name, attrs):
        tag = local(name)
        if tag == "trkpt":
            lon, lat = attrs.get("lon"), attrs.get("lat")
            state["point"] = point = (coordinate(lon), coordinate(lat))
            state["time"] = None
            if np.isnan(point).any():  # no number: say which, unless it says nan
                for key, text in (("lat", lat), ("lon", lon)):
                    if text is not None and not COORDINATE.match(text.encode("utf-8",
                                                                              "replace")):
                        state["bad"] += 1
                        state["example"] = state["example"] or f'{key}="{text[:20]}"'
                        break
        elif tag == "trk":
            state["depth_trk"] += 1
        elif tag == "trkseg":
            flush()
        elif tag == "rte":
            state["routes"] += 1
        elif tag == "wpt":
            state["waypoints"] += 1
        if tag in ("time", "type") and (state["point"] is not None or tag == "type"):
            state["text"] = []

    def end(name):
        tag = local(name)
        if tag == "trkpt" and state["point"] is not None:
            current.append(state["point"])
            current_times.append(state["time"])
            state["point"] = None
        elif tag == "time" and state["text"] is not None:
            if state["point"] is not None:
                state["time"] = "".join(state["text"]).strip().encode()
            state["text"] = None
        elif tag == "type" and state["text"] is not None:
            if state["depth_trk"] and state["sport"] is None:
                state["sport"] = "".join(state["text"]).strip() or None
            state["text"] = None
        elif tag in ("trkseg", "trk"):
            flush()

    def chars(text):
        if state["text"] is not None:
            state["text"].append(text)

    def flush():
        if current:
            segments.append(np.array(current, dtype=np.float64))
            seg_times.append(list(current_times))
        current.clear()
        current_times.clear()

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    error = None
    try:
        step = 1 << 20
        for at in range(0, len(data), step):
            parser.Parse(data[at:at + step], False)
        parser.Parse(b"", True)
    except xml.parsers.expat.ExpatError as err:
        error = f"broken or truncated XML ({err})"
    except RecursionError:
        error = "nested too deeply"
    flush()
    return Streamed(segments, seg_times, state["routes"], state["waypoints"], state["sport"],
                    error, state["bad"], state["example"])
