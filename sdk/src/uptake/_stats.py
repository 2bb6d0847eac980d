"""Counters of what happened to tracked events, and the reports given to on_error."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("uptake")

DELIVERED = "delivered"
REJECTED = "rejected"
QUEUE_FULL = "queue_full"
OVERSIZE = "oversize"
RETRIES_EXHAUSTED = "retries_exhausted"
SHUTDOWN = "shutdown"
INVALID = "invalid"
SPOOL_FULL = "spool_full"
SPOOL_CORRUPT = "spool_corrupt"
# Every final outcome of an event: one value of the outcome label of uptake_sdk_events_total.
OUTCOMES = (
    DELIVERED,
    REJECTED,
    QUEUE_FULL,
    OVERSIZE,
    RETRIES_EXHAUSTED,
    SHUTDOWN,
    INVALID,
    SPOOL_FULL,
    SPOOL_CORRUPT,
)


@dataclass(frozen=True, kw_only=True)
class Stats:
    """What happened to this client's events so far (in this process).

    `delivered` events are stored by the server; every other counter is a drop
    reason. `queued` events wait in memory and `spooled` events on disk.
    """

    delivered: int = 0
    rejected: int = 0
    queue_full: int = 0
    oversize: int = 0
    retries_exhausted: int = 0
    shutdown: int = 0
    invalid: int = 0
    spool_full: int = 0
    spool_corrupt: int = 0
    queued: int = 0
    spooled: int = 0

    @property
    def dropped(self) -> int:
        """Return the number of events lost for any reason."""
        return sum(getattr(self, outcome) for outcome in OUTCOMES if outcome != DELIVERED)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """Events that will not be delivered, and why (given to the on_error callback).

    `outcome` is a drop reason of Stats; `code` is the server's rejection code or the
    gRPC status name; `field` and `event_id` (hex) are set for a single rejected event.
    """

    outcome: str
    count: int
    reason: str
    code: str = ""
    field: str = ""
    event_id: str = ""


OnError = Callable[[Failure], None]


class Counters:
    """Thread-safe event counts by outcome."""

    def __init__(self, on_error: OnError | None = None) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._on_error = on_error

    def add(self, outcome: str, count: int) -> None:
        """Count `count` events with this outcome."""
        with self._lock:
            self._counts[outcome] += count

    def lost(self) -> int:
        """Return how many events have been dropped so far, for any reason."""
        with self._lock:
            return sum(n for outcome, n in self._counts.items() if outcome != DELIVERED)

    def fail(self, failure: Failure) -> None:
        """Count a failure, log it and hand it to the on_error callback."""
        self.add(failure.outcome, failure.count)
        where = f" (event {failure.event_id}, field {failure.field})" if failure.event_id else ""
        log.warning(
            "uptake: %d event(s) not delivered: %s%s: %s",
            failure.count,
            failure.code or failure.outcome,
            where,
            failure.reason,
        )
        if self._on_error is not None:
            try:
                self._on_error(failure)
            except Exception:
                log.exception("uptake: the on_error callback raised")

    def snapshot(self, *, queued: int, spooled: int) -> Stats:
        """Return the counts as a Stats value."""
        with self._lock:
            counts = dict(self._counts)
        return Stats(queued=queued, spooled=spooled, **counts)
