"""An exclusive lock on an embedded data directory, held for the life of the process.

chDB allows one process per data directory and reports a second one with an
opaque engine error; this lock turns that into a message that names the directory
and the process that holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from uptake_server.errors import StoreLocked


class DirectoryLock:
    """Hold `<directory>.lock` with flock; the kernel drops it if the process dies."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory.with_name(directory.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreLocked naming the directory and the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"the data directory {self.directory} is in use by another Uptake process "
                f"(pid {holder}); stop that process first, or use another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
