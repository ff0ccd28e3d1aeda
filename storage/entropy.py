"""Random bytes for the hot path, read from the OS in blocks."""

from __future__ import annotations

import os
import threading


class RandomPool:
    """16-byte random values cut from one ``os.urandom`` read of 4 KiB.

    Every encrypted reply starts with 16 random bytes and every sender lock taken in Redis
    gets a random owner token: one system call per 256 of them instead of one each (the
    bytes are the same CSPRNG output, each used once).
    """

    def __init__(self, size: int = 4096) -> None:
        if size < 16 or size % 16:
            raise ValueError("the pool size must be a positive multiple of 16")
        self._size = size
        self._lock = threading.Lock()  # callers are on the event loop today; cheap insurance
        self._pool = b""
        self._at = 0
        if hasattr(os, "register_at_fork"):  # a forked child must not reuse our bytes
            os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        # in a forked child: another thread may have held the lock at the fork
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0

    def __call__(self) -> bytes:
        with self._lock:
            if self._at + 16 > len(self._pool):
                self._pool, self._at = os.urandom(self._size), 0
            at = self._at
            self._at = at + 16
            return self._pool[at : at + 16]


_POOL = RandomPool()


def random16_bytes() -> bytes:
    """16 random bytes (each call new ones)."""
    return _POOL()


def random_token() -> str:
    """A random 128-bit token as 32 hex digits (what ``uuid.uuid4().hex`` would be for)."""
    return _POOL().hex()
