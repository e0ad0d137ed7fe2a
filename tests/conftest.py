"""Shared helpers: real data from ../shared (skipped when absent) and small generated GPX."""

import ipaddress
import socket
from pathlib import Path

import numpy as np
import pytest

from geoheat.samples import gpx_document

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_folder(name: str) -> Path:
    """A folder of ../shared/data, or skip the test saying why."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: real-data tests need ../shared beside the checkout")
    return folder


def straight(lon0, lat0, lon1, lat1, step_m=50):
    """Points every step_m metres (roughly) on a straight line."""
    km = np.hypot((lon1 - lon0) * 77, (lat1 - lat0) * 111)
    n = max(int(km * 1000 / step_m), 2)
    return list(zip(np.linspace(lon0, lon1, n), np.linspace(lat0, lat1, n)))


@pytest.fixture
def write_gpx(tmp_path):
    """Write a GPX file of (lon, lat) segments into tmp_path; returns its path."""

    def write(name, *segments, start=None, folder=None, **kwargs):
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = [np.asarray(s, dtype=float).reshape(-1, 2) for s in segments]
        path.write_text(gpx_document(arrays, start=start, **kwargs))
        return path

    return write


@pytest.fixture(autouse=True)
def no_internet(monkeypatch, tmp_path_factory):
    """Tests never touch the internet: connections beyond loopback fail at once.

    Also gives every test its own empty tile cache.
    """
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"tests may not connect to {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("GEOHEAT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
