"""An exclusive lock on an embedded data directory, held for the life of the process.

chDB allows one process per data directory and reports a second one with an
opaque engine error; this lock turns that into a message that names the directory
and the process that holds it. The file also tells whether the previous holder
shut down cleanly ("clean") or died holding it ("pid N"): after a crash the store
repairs its duplicate filter (ClickHouseStore.recover).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from uptake_server.errors import StoreLocked

CLEAN = "clean\n"


class DirectoryLock:
    """Hold `<directory>.lock` with flock; the kernel drops it if the process dies."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory.with_name(directory.name + ".lock")
        self._fd: int | None = None
        # Whether the previous holder died without releasing (kill, crash, power loss).
        self.unclean = False

    def acquire(self) -> None:
        """Take the lock or raise StoreLocked naming the directory and the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip().removeprefix("pid ")
            os.close(fd)
            raise StoreLocked(
                f"the data directory {self.directory} is in use by another Uptake process "
                f"(pid {holder or 'unknown'}); stop that process first, or use another --data-dir"
            ) from None
        previous = os.read(fd, 64).decode(errors="replace").strip()
        self.unclean = previous.startswith("pid ")
        _rewrite(fd, f"pid {os.getpid()}\n")
        self._fd = fd

    def release(self) -> None:
        """Mark a clean shutdown and release the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            _rewrite(self._fd, CLEAN)
            os.close(self._fd)
            self._fd = None


def _rewrite(fd: int, content: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, content.encode(), 0)
    os.fsync(fd)
