"""Damaged FIT files: the FIT CRC."""

from geoheat import fitdamage

from .conftest import shared_folder
from .test_fit import shared_fit_files


def test_the_crc_is_the_fit_crc():
    for path in shared_fit_files()[:3] or [None]:
        if path is None:
            shared_folder("fit-tcx")
        data = path.read_bytes()
        end = data[0] + int.from_bytes(data[4:8], "little")
        assert fitdamage.crc16(data[:end]) == int.from_bytes(data[end:end + 2], "little"), path
    assert fitdamage.crc16(b"123456789") == 0xBB3D  # CRC-16/ARC's check value
    long = bytes(range(256)) * 40 + b"tail"  # long enough for the lanes
    crc = 0
    for byte in long:  # bit by bit, as the FIT protocol describes it
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    assert fitdamage.crc16(long) == crc
