"""Bounds on the work the ingestion service holds at once: calls, request bytes, events.

Every Ingest call takes a `Ticket` when it arrives (a call slot), adds its raw
request size before the request is decoded, and its event count right after.
A ticket that would cross a bound is refused, and the caller answers UNAVAILABLE
with RetryInfo: an overloaded server sheds load instead of growing until it is
killed. Decoding costs about seven times the raw size in memory, so the byte
bound is what keeps a burst of large requests from exhausting memory.

One request larger than a bound still passes when nothing else is in flight, so
a bound set below the message size limit slows large requests down but never
refuses them forever.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import Gauge


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """The most calls, raw request bytes and decoded events in flight at once."""

    calls: int
    bytes: int
    events: int


class InflightLimits:
    """Count what the in-flight Ingest calls hold; refuse what would cross a bound."""

    def __init__(
        self, bounds: Bounds, *, bytes_gauge: Gauge | None = None, events_gauge: Gauge | None = None
    ) -> None:
        self.bounds = bounds
        self._lock = threading.Lock()
        self._calls = 0
        self._bytes = 0
        self._events = 0
        self._bytes_gauge = bytes_gauge
        self._events_gauge = events_gauge

    @property
    def in_flight(self) -> tuple[int, int, int]:
        """Return the calls, bytes and events held now."""
        with self._lock:
            return self._calls, self._bytes, self._events

    def admit(self) -> Ticket | None:
        """Take a call slot; return None when every slot is taken."""
        with self._lock:
            if self._calls >= self.bounds.calls:
                return None
            self._calls += 1
        return Ticket(self)

    def _take(self, *, size: int, events: int) -> bool:
        with self._lock:
            if size and self._bytes and self._bytes + size > self.bounds.bytes:
                return False
            if events and self._events and self._events + events > self.bounds.events:
                return False
            self._bytes += size
            self._events += events
            self._publish()
        return True

    def _give_back(self, *, calls: int, size: int, events: int) -> None:
        with self._lock:
            self._calls -= calls
            self._bytes -= size
            self._events -= events
            self._publish()

    def _publish(self) -> None:
        if self._bytes_gauge is not None:
            self._bytes_gauge.set(self._bytes)
        if self._events_gauge is not None:
            self._events_gauge.set(self._events)


class Ticket:
    """What one call holds; given back once, by `release()` or when the call is dropped.

    gRPC does not run the handler of a call cancelled before its request arrived,
    so the finalizer is what returns the slot of such a call.
    """

    __slots__ = ("__weakref__", "_bytes", "_events", "_finalizer", "_limits")

    def __init__(self, limits: InflightLimits) -> None:
        self._limits = limits
        self._bytes = 0
        self._events = 0
        self._finalizer = weakref.finalize(self, limits._give_back, calls=1, size=0, events=0)

    def add_bytes(self, size: int) -> bool:
        """Hold `size` more request bytes; False (nothing held) when over the bound."""
        return self._add(size=size, events=0)

    def add_events(self, count: int) -> bool:
        """Hold `count` more events; False (nothing held) when over the bound."""
        return self._add(size=0, events=count)

    def _add(self, *, size: int, events: int) -> bool:
        if not self._finalizer.alive or not self._limits._take(size=size, events=events):
            return False
        self._bytes += size
        self._events += events
        # Re-arm the finalizer so that it gives back everything held so far.
        self._finalizer.detach()
        self._finalizer = weakref.finalize(
            self, self._limits._give_back, calls=1, size=self._bytes, events=self._events
        )
        return True

    def release(self) -> None:
        """Give back the slot, bytes and events (only the first call counts)."""
        self._finalizer()
