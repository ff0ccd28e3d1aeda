"""On SQLite only one sender may run per database: an exclusive file lock beside it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tortoise.backends.base.config_generator import expand_db_url


class SenderLock:
    """A non-blocking exclusive lock; a no-op for PostgreSQL (row claims suffice there)."""

    def __init__(self, database_url: str) -> None:
        self.path: Path | None = None
        if database_url.startswith("sqlite://"):
            file_path = expand_db_url(database_url)["credentials"]["file_path"]
            if file_path != ":memory:":
                self.path = Path(f"{file_path}.sender.lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when this process may run the sender."""
        if self.path is None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
