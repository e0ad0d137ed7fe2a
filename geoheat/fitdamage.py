"""Damaged FIT files (issue 19): whether a file's CRC matches, and which positions are
out of step with the track.

One changed byte can make a position thousands of km off (a flipped coordinate bit),
or make the walk read the rest of the file out of step, drawing garbage that looks like
a track. Such positions are left out of a damaged file only: one that broke off, or
whose CRC does not match. Undamaged files keep every position, GPS glitches included,
exactly as the SDK reads them.
"""

import numpy as np

from .fitformat import INVALID_UINT32, SEMICIRCLE

NEAR_KM = 1.0  # a position this close to a trusted neighbour (+-2 records) is on the track
NEAR_SEMICIRCLES = NEAR_KM / 111.195 / SEMICIRCLE  # NEAR_KM in semicircles of latitude
TIME_SPAN_DAYS = 30  # a record timed this far from the others' median is out of step
_CRC_TABLE = None


def crc16(data: bytes) -> int:
    """The FIT CRC (CRC-16/ARC) of data. Vectorised over lanes of the bytes (the CRC is
    linear, so the lanes' CRCs combine): about 10 ms a megabyte where plain Python takes
    a second; needed only to tell whether a suspect file is damaged."""
    global _CRC_TABLE
    if _CRC_TABLE is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
            table.append(c)
        _CRC_TABLE = np.array(table, np.int64)
    table, n = _CRC_TABLE, len(data)
    if n < 4096:
        crc, plain = 0, _CRC_TABLE.tolist()
        for byte in data:
            crc = (crc >> 8) ^ plain[(crc ^ byte) & 0xFF]
        return crc
    width = max(64, int(n ** 0.5) // 8)
    lanes = -(-n // width)
    padded = np.zeros(lanes * width, np.uint8)  # leading zeros leave a CRC-16/ARC at 0
    padded[lanes * width - n:] = np.frombuffer(data, np.uint8)
    columns = np.ascontiguousarray(padded.reshape(lanes, width).T).astype(np.int64)
    crc = np.zeros(lanes, np.int64)
    for column in columns:
        crc = (crc >> 8) ^ table[(crc ^ column) & 0xFF]
    # What `width` zero bytes make of each bit of a CRC: combine lane after lane.
    bits = np.int64(1) << np.arange(16, dtype=np.int64)
    for _ in range(width):
        bits = (bits >> 8) ^ table[bits & 0xFF]
    values = np.arange(256)
    low = np.bitwise_xor.reduce(np.where((values[:, None] >> np.arange(8)) & 1, bits[:8], 0),
                                axis=1).tolist()
    high = np.bitwise_xor.reduce(np.where((values[:, None] >> np.arange(8)) & 1, bits[8:], 0),
                                 axis=1).tolist()
    total = 0
    for lane in crc.tolist():
        total = low[total & 0xFF] ^ high[total >> 8] ^ lane
    return total


def crc_mismatch(data: bytes, files: list[tuple[int, int]]) -> bool:
    """Whether a chained file's CRC does not match its bytes (a stored 0: not computed)."""
    for start, at in files:
        stored = int.from_bytes(data[at:at + 2], "little")
        if stored and crc16(data[start:at]) != stored:
            return True
    return False


def off_track(lat: np.ndarray, lon: np.ndarray, stamps: np.ndarray,
              created: int | None = None) -> np.ndarray:
    """Which positions (semicircles, in file order; stamps INVALID_UINT32 where none) are
    out of step with the others: timed far from the file's time_created (`created`, a
    time some record agrees with) or from the others' median, or as the record before
    or after, or with a coordinate of 0 or -1 semicircles, or by 0, 0; or more than
    NEAR_KM from every trusted position among the two records before and after. A
    damaged file leaves these out. Cheap for a sound track: a few tests on consecutive
    steps."""
    n = len(lat)
    suspect = np.zeros(n, bool)
    timed = stamps != INVALID_UINT32
    if np.count_nonzero(timed) >= 3:
        span = TIME_SPAN_DAYS * 86400
        seconds = stamps if timed.all() else stamps[timed]
        if seconds.max() - seconds.min() > span:
            suspect[timed] = np.abs(seconds - np.median(seconds)) > span
        # A record timed as the one before or after it: an out-of-step walk reads the
        # same bytes as the time of record after record (a device moves on between them).
        same = timed[1:] & (stamps[1:] == stamps[:-1])
        suspect[1:] |= same
        suspect[:-1] |= same
    if created is not None:
        suspect |= timed & (np.abs(stamps - created) > TIME_SPAN_DAYS * 86400)
    # A coordinate of 0 or -1 semicircles, or both within NEAR_KM of 0, 0: zero or 0xFF
    # bytes (an unsigned field's "no value") read as a position. Still kept if a trusted
    # neighbour is near.
    suspect |= (lat == 0) | (lat == -1) | (lon == 0) | (lon == -1)
    suspect |= (np.abs(lat) <= NEAR_SEMICIRCLES) & (np.abs(lon) <= NEAR_SEMICIRCLES)
    if n < 2:  # a lone position: no neighbour vouches for it
        return np.ones(n, bool)
    if not suspect.any():
        step = np.abs(np.subtract(lat[1:], lat[:-1], dtype=np.int64))
        np.maximum(step, np.abs(np.subtract(lon[1:], lon[:-1], dtype=np.int64)), out=step)
        if step.max() <= NEAR_SEMICIRCLES / 2**0.5:
            return suspect  # every position within NEAR_KM of the next one
    lat64, lon64 = lat.astype(np.int64), lon.astype(np.int64)
    coslat = np.cos(np.radians(lat64 * SEMICIRCLE))
    closes = []  # (k, whether position i and i + k are within NEAR_KM)
    for k in (1, 2):
        if k < n:
            dy = (lat64[k:] - lat64[:-k]).astype(float)
            dx = ((lon64[k:] - lon64[:-k] + 2**31) % 2**32 - 2**31) * np.minimum(
                coslat[k:], coslat[:-k])
            closes.append((k, np.hypot(dx, dy) <= NEAR_SEMICIRCLES))
    trusted = ~suspect
    while True:  # a trusted position no trusted neighbour vouches for is trusted no more
        near = np.zeros(n, bool)
        for k, close in closes:
            near[k:] |= close & trusted[:-k]
            near[:-k] |= close & trusted[k:]
        if not (trusted & ~near).any():
            return ~near
        trusted &= near
