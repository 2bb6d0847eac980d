"""Memory the embedded engine holds without using it, given back to the system.

The embedded store loads ClickHouse into the server's process. Two things then count
in the process's RSS, and in a container's working set, without being memory the
server uses:

- Code pages. The engine's library is about 550 MB; starting the engine touches about
  250 MB of it (thousands of functions, formats and settings registered once), and the
  kernel keeps every page it mapped. `release_code_pages()` asks it to reclaim the
  library's read-only pages (madvise MADV_PAGEOUT, Linux 5.4 or later); the pages in
  use come back on their next use, the start-up ones stay out. Under load, code used
  once in a while (a KPI refresh, a merge of another table) comes back and stays
  mapped too: `CodeMappings.unmap()` drops this process's mappings of the library's
  clean pages (MADV_DONTNEED) and leaves the pages in the page cache, so what is in
  use is mapped again by a minor fault, without reading the disk.
- Freed pages. The engine's allocator (jemalloc) keeps the pages its inserts, merges
  and queries freed, for reuse, for several seconds. `PURGE_SQL` hands them back now.
- Freed blocks. Each engine thread keeps a cache of the blocks it freed, by default up
  to 200 of each small size and blocks up to 32 KiB, counted as allocated: about 30 MB
  over the engine's threads. `tune_allocator()` keeps these caches small (the options
  are read once, when the library loads, so it runs before the first connection).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

# "evict": the start-up code, out of the page cache too; "unmap": code mapped since.
CodeRelease = Literal["", "evict", "unmap"]
# The store's client for these statements, apart from the roll-up's and the writer's.
ROLE = "memory"
MADV_DONTNEED = 4
MADV_PAGEOUT = 21
PURGE_SQL = "SYSTEM JEMALLOC PURGE"
MAPS = Path("/proc/self/maps")
SMAPS = Path("/proc/self/smaps")
# The variable the engine's allocator reads its options from, and the options given:
# thread caches of at most 20 blocks of each size, for blocks up to 1 KiB.
ALLOCATOR_ENV = "JE_MALLOC_CONF"
ALLOCATOR_OPTIONS = "tcache_max:1024,tcache_nslots_small_max:20"


def tune_allocator() -> None:
    """Give the engine's allocator ALLOCATOR_OPTIONS; nothing once its library is loaded
    (too late then). Options already in the environment come after them, so an
    operator's own win; a process that inherited them gets them once."""
    given = os.environ.get(ALLOCATOR_ENV, "")
    if "chdb" not in sys.modules and not given.startswith(ALLOCATOR_OPTIONS):
        os.environ[ALLOCATOR_ENV] = ",".join(filter(None, (ALLOCATOR_OPTIONS, given)))


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
    prefix = f"{directory}{os.sep}"
    found = (_read_only_range(line.split(maxsplit=5), prefix) for line in maps.splitlines())
    ranges = [found_range for found_range in found if found_range is not None]
    # EINVAL: a kernel older than 5.4. Nothing is lost but the saving.
    return _advise(ranges, MADV_PAGEOUT)


def _read_only_range(header: list[str], prefix: str) -> tuple[int, int] | None:
    """Return the addresses of a mapping (a maps line, split) of a file under `prefix`
    that this process cannot write; None for any other mapping."""
    if len(header) == 6 and "w" not in header[1] and header[5].startswith(prefix):
        start, end = (int(address, 16) for address in header[0].split("-"))
        return start, end
    return None


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _advise(ranges: list[tuple[int, int]], advice: int) -> int:
    """madvise each range; return the resident bytes that went (0 if the kernel refused)."""
    before = resident_bytes()
    for start, end in ranges:
        if _libc().madvise(start, end - start, advice) != 0:
            log.debug("madvise(%d) failed: %s", advice, os.strerror(ctypes.get_errno()))
            return 0
    return max(0, before - resident_bytes())


def clean_file_ranges(smaps: str, directory: Path) -> list[tuple[int, int]]:
    """Return the address ranges of read-only mappings of files under `directory` that
    hold no private copies (`Anonymous: 0 kB`), from the text of /proc/<pid>/smaps.

    Only such pages are the file's own: dropping them loses nothing. A read-only
    mapping with anonymous pages (relocations written at load, then write-protected)
    would lose its writes, so it is never a candidate.
    """
    prefix = f"{directory}{os.sep}"
    ranges: list[tuple[int, int]] = []
    candidate: tuple[int, int] | None = None
    for line in smaps.splitlines():
        fields = line.split(maxsplit=5)
        if not fields:
            continue
        if not fields[0].endswith(":"):  # a mapping's header: address perms offset dev inode path
            candidate = _read_only_range(fields, prefix)
        elif fields[0] == "Anonymous:" and candidate is not None:
            if int(fields[1]) == 0:
                ranges.append(candidate)
            candidate = None
    return ranges


class CodeMappings:
    """The engine library's clean read-only mappings in this process, found once.

    The library's mappings do not change once it is loaded, so /proc/self/smaps (slow
    to read: the kernel walks every page) is read only here; `unmap()` is then one
    madvise per mapping.
    """

    def __init__(self, directory: Path) -> None:
        try:
            smaps = SMAPS.read_text()
        except OSError:
            smaps = ""
        self.ranges = clean_file_ranges(smaps, directory)

    def unmap(self) -> int:
        """Drop this process's mappings of the pages; return the resident bytes that went."""
        return _advise(self.ranges, MADV_DONTNEED)


@functools.cache
def code_mappings() -> CodeMappings:
    """Return the engine library's clean mappings in this process (found at the first call)."""
    return CodeMappings(engine_library_dir())
