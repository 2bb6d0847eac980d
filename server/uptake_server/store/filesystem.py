"""The file system under an embedded store: a warning where it makes every insert slow.

Every insert writes a part, a directory of about a dozen files, and merges remove
parts as fast. On ext4 without a journal the kernel checks, for each file it
creates, whether the free inodes it finds were deleted in the last seconds, and
skips those: with parts created and removed all the time, that scan took about 70%
of an insert's CPU (a one-row insert 4-8 ms instead of 1.4 ms on ext4 with its
journal; docs/operations.md, "File system"). With a journal the kernel does not
check. Nothing here changes the file system; the store says so once at start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MOUNTS = Path("/proc/self/mounts")
EXT4_SYSFS = Path("/sys/fs/ext4")


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def mount_of(path: Path, mounts: Path = MOUNTS) -> tuple[str, str, str] | None:
    """Return (device, mount point, type) of the mount that holds `path`, if known."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best: tuple[str, str, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, kind = _unescape(fields[0]), _unescape(fields[1]), fields[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        # The longest mount point wins; a later mount over the same point hides earlier ones.
        if inside and (best is None or len(point) >= len(best[1])):
            best = (device, point, kind)
    return best


def unjournaled_ext4(path: Path, *, mounts: Path = MOUNTS, sysfs: Path = EXT4_SYSFS) -> str | None:
    """Return the device if `path` lies on ext4 without a journal; None otherwise or if unknown."""
    mount = mount_of(path, mounts)
    if mount is None or mount[2] != "ext4":
        return None
    device = mount[0]
    # /dev/mapper/name is a link to /dev/dm-N; the kernel's directory is named dm-N.
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/") else device
    try:
        journal = (sysfs / name / "journal_task").read_text().strip()
    except OSError:
        return None
    return device if journal == "<none>" else None


def warn_if_unjournaled(path: Path, *, mounts: Path = MOUNTS, sysfs: Path = EXT4_SYSFS) -> None:
    """Log a warning if the data directory lies on ext4 without a journal."""
    device = unjournaled_ext4(path, mounts=mounts, sysfs=sysfs)
    if device is None:
        return
    log.warning(
        "the data directory %s is on ext4 without a journal (%s): the kernel then checks "
        "recently deleted inodes for every file it creates, which makes each insert several "
        "milliseconds slower; put it on a journaled file system (ext4 with its journal, xfs) "
        "(docs/operations.md, File system)",
        path,
        device,
    )
