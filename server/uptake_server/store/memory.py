"""Memory the embedded engine holds without using it, given back to the system.

The embedded store loads ClickHouse into the server's process. Two things then count
in the process's RSS, and in a container's working set, without being memory the
server uses:

- Code pages. The engine's library is about 550 MB; starting the engine touches about
  250 MB of it (thousands of functions, formats and settings registered once), and the
  kernel keeps every page it mapped. `release_code_pages()` asks it to reclaim the
  library's read-only pages (madvise MADV_PAGEOUT, Linux 5.4 or later); the pages in
  use come back on their next use, the start-up ones stay out.
- Freed pages. The engine's allocator (jemalloc) keeps the pages its inserts, merges
  and queries freed, for reuse, for several seconds. `PURGE_SQL` hands them back now.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21
PURGE_SQL = "SYSTEM JEMALLOC PURGE"
MAPS = Path("/proc/self/maps")


def engine_library_dir() -> Path:
    """Return the directory of the embedded engine's library (the chdb package)."""
    import chdb

    return Path(chdb.__file__).parent


def resident_bytes(field: str = "RssFile", pid: int | None = None) -> int:
    """Return a process's resident memory in bytes (this one's unless `pid`; 0 off Linux):
    VmRSS all of it, RssFile its mapped files (mostly the engine's code), RssAnon its own."""
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def release_code_pages(directory: Path) -> int:
    """Ask the kernel to reclaim the read-only pages of files under `directory` mapped
    into this process; return the resident bytes that went (0 where it cannot)."""
    try:
        maps = MAPS.read_text()
    except OSError:
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    prefix = f"{directory}{os.sep}"
    before = resident_bytes()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or not fields[5].startswith(prefix):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        if libc.madvise(start, end - start, MADV_PAGEOUT) != 0:
            # EINVAL: a kernel older than 5.4. Nothing is lost but the saving.
            log.debug("madvise(MADV_PAGEOUT) failed: %s", os.strerror(ctypes.get_errno()))
            return 0
    return max(0, before - resident_bytes())
