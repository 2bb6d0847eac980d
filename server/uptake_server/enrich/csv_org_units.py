"""The built-in enricher: org units from a CSV export of the directory, reloaded on change.

The file has a header row with `user_id` and `org_unit` columns (others are
ignored). It is checked for changes at most once a second; a file that fails to
parse keeps the previous mapping in use and is logged.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from uptake_server.enrich.base import EventFields
from uptake_server.errors import ConfigError

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 1.0


class CsvOrgUnits:
    """Fill empty org units from a user_id -> org_unit CSV file."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        try:
            self._units = self._read()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"org unit CSV {self.path}: {exc}") from None

    @property
    def size(self) -> int:
        """Return how many user ids the mapping holds."""
        return len(self._units)

    def _read(self) -> dict[str, str]:
        info = os.stat(self.path)
        with open(self.path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"user_id", "org_unit"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"the header lacks {', '.join(sorted(missing))}")
            units = {
                row["user_id"].strip(): row["org_unit"].strip()
                for row in reader
                if row.get("user_id") and row.get("org_unit")
            }
        self._stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        log.info("org unit CSV %s: %d user ids", self.path, len(units))
        return units

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < CHECK_INTERVAL_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                info = os.stat(self.path)
            except OSError as exc:
                log.warning(
                    "org unit CSV %s unreadable, keeping the old mapping: %s", self.path, exc
                )
                return
            if (info.st_mtime_ns, info.st_size, info.st_ino) == self._stamp:
                return
            try:
                self._units = self._read()
            except (OSError, ValueError) as exc:
                log.error(
                    "org unit CSV %s not reloaded, keeping the old mapping: %s", self.path, exc
                )

    def enrich(self, events: Sequence[EventFields]) -> None:
        """Set the org unit of events that have none and whose user id is in the file."""
        self._maybe_reload()
        units = self._units
        for event in events:
            if not event.org_unit:
                unit = units.get(event.user_id)
                if unit:
                    event.org_unit = unit
