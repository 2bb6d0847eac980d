"""The offline spool: batches kept on disk while the server is unreachable.

Each batch is one file, written to a hidden temporary name and renamed into place, so
readers never see half a file. Names start with the time in nanoseconds, so sorting
them replays batches oldest first, across processes. A process sending a file holds an
exclusive flock on it, so processes sharing the directory never send the same file at
once, and a process that dies releases its locks. Files carry a length and CRC-32: a
corrupt file is set aside with a warning and counted, never fatal.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import time
import zlib
from pathlib import Path
from typing import BinaryIO

from uptake._event import Record
from uptake._stats import SPOOL_CORRUPT, SPOOL_FULL, Counters, Failure
from uptake._wire import records_of, to_request
from uptake.v1.ingest_pb2 import IngestRequest

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("uptake")

MAGIC = b"UPTAKE-SPOOL-1\n"
_HEADER = struct.Struct(">II")  # payload length, CRC-32 of the payload
SUFFIX = ".batch"
CORRUPT_SUFFIX = ".corrupt"


class SpoolEntry:
    """One spooled batch, locked by this process until done() or release()."""

    def __init__(self, path: Path, handle: BinaryIO, events: list[Record]) -> None:
        self.path = path
        self._handle = handle
        self.events = events

    def done(self) -> None:
        """Delete the file: its events are settled."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self._handle.close()  # closing drops the lock

    def release(self) -> None:
        """Keep the file for a later try and let other processes take it."""
        self._handle.close()


class Spool:
    """A directory of spooled batches, bounded in bytes (oldest dropped first)."""

    def __init__(self, directory: str, *, max_bytes: int, counters: Counters) -> None:
        if fcntl is None:
            raise OSError("the spool needs POSIX file locks (fcntl), not available here")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._counters = counters
        self._sequence = itertools.count()

    def write(self, events: list[Record]) -> None:
        """Store a batch; on any failure count its events as spool_full."""
        payload = to_request(events).SerializeToString()
        data = MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}-{len(events)}"
        temporary = self.directory / f".{name}.tmp"
        try:
            self._make_room(len(data))
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temporary, self.directory / (name + SUFFIX))
        except OSError as error:
            temporary.unlink(missing_ok=True)
            self._counters.fail(
                Failure(
                    outcome=SPOOL_FULL,
                    count=len(events),
                    reason=f"cannot write to the spool directory {self.directory}: {error}",
                )
            )

    def pending(self) -> int:
        """Return how many events the spool holds (all processes)."""
        return sum(_count(path) for path in self._files())

    def take(self) -> SpoolEntry | None:
        """Lock and read the oldest batch no other process is sending; None if none."""
        for path in self._files():
            handle = self._lock(path)
            if handle is None:
                continue
            try:
                events = _decode(handle.read())
            except ValueError as error:
                handle.close()
                self._set_aside(path, str(error))
                continue
            return SpoolEntry(path, handle, events)
        return None

    def _files(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as error:
            log.warning("uptake: cannot list the spool directory %s: %s", self.directory, error)
            return []
        return [self.directory / name for name in names if name.endswith(SUFFIX)]

    def _lock(self, path: Path) -> BinaryIO | None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - held open while locked
        except OSError:
            return None  # taken and deleted by another process meanwhile
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        if os.fstat(handle.fileno()).st_nlink == 0:
            handle.close()  # another process finished it between open and lock
            return None
        return handle

    def _make_room(self, incoming: int) -> None:
        files = self._files()
        sizes = {path: _size(path) for path in files}
        total = sum(sizes.values()) + incoming
        for path in files:
            if total <= self._max_bytes:
                return
            handle = self._lock(path)
            if handle is None:
                continue
            try:
                path.unlink(missing_ok=True)
            finally:
                handle.close()
            total -= sizes[path]
            self._counters.fail(
                Failure(
                    outcome=SPOOL_FULL,
                    count=_count(path),
                    reason=f"the spool {self.directory} is over {self._max_bytes:,} bytes; "
                    "dropped its oldest batch",
                )
            )

    def _set_aside(self, path: Path, why: str) -> None:
        try:
            path.rename(path.with_suffix(CORRUPT_SUFFIX))
        except OSError:
            path.unlink(missing_ok=True)
        self._counters.fail(
            Failure(
                outcome=SPOOL_CORRUPT,
                count=_count(path),
                reason=f"skipped the corrupt spool file {path.name} ({why})",
            )
        )


def _decode(data: bytes) -> list[Record]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER.size:
        raise ValueError("not a spool file")
    length, checksum = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[len(MAGIC) + _HEADER.size :]
    if len(payload) != length or zlib.crc32(payload) != checksum:
        raise ValueError("truncated or damaged")
    try:
        # Files of earlier versions hold one message per event; both forms replay.
        return records_of(IngestRequest.FromString(payload))
    except Exception as error:  # protobuf's DecodeError, whatever the backend
        raise ValueError(f"undecodable: {error}") from None


def _count(path: Path) -> int:
    """Return the number of events in a spool file, from its name."""
    try:
        return int(path.name.split(".")[0].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
