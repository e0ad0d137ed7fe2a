"""Caches bounded in bytes, values made once per key, and freed memory given back: where
`geoheat serve`'s renderer (render.Renderer) keeps its selections, levels' scales and
counts, metatiles and PNGs.

Everything here is safe to call from several threads: a value is made once, by the
first thread that asks for it, while the others wait for it. Memory freed after a burst
of work is given back to the system (malloc_trim, where glibc).
"""

import threading
from collections import OrderedDict
from collections.abc import Callable


class BytesLRU:
    """A thread-safe LRU mapping whose values' sizes (size_of) sum to at most max_bytes."""

    def __init__(self, max_bytes: int, size_of: Callable = len, keep_oversize: bool = False):
        self.max_bytes, self.size_of, self.keep_oversize = max_bytes, size_of, keep_oversize
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        size = self.size_of(value)
        with self.lock:
            if key in self.items:
                self.bytes -= self.size_of(self.items.pop(key))
            if size > self.max_bytes and not self.keep_oversize:
                return  # larger than the whole cache: not kept
            self.items[key] = value
            self.bytes += size
            # (An oversize value, where kept, stays alone: the newest item never goes.)
            while self.bytes > self.max_bytes and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.bytes -= self.size_of(old)


class MadeOnce:
    """Values made once per key (threads asking meanwhile wait for the first)."""

    def __init__(self):
        self.locks: dict = {}
        self.locks_lock = threading.Lock()

    def lock(self, key) -> threading.Lock:
        """The lock of key, the same for every thread (kept)."""
        with self.locks_lock:
            return self.locks.setdefault(key, threading.Lock())

    def get(self, cache: BytesLRU, key, make: Callable):
        """cache's value for key, made by make() and put in cache when it has none."""
        value = cache.get(key)
        if value is not None:
            return value
        with self.locks_lock:
            lock = self.locks.setdefault((id(cache), key), threading.Lock())
        with lock:
            value = cache.get(key)
            if value is None:
                value = make()
                cache.put(key, value)
        with self.locks_lock:
            self.locks.pop((id(cache), key), None)
        return value


def give_back_memory() -> None:
    """Return freed heap to the system (glibc keeps it otherwise, and a burst of big
    levels would hold the server's memory at its peak)."""
    import ctypes
    import ctypes.util

    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None
