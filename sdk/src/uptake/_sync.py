"""Delivery in the caller's thread, for `mode="sync"` (scripts and serverless functions)."""

from __future__ import annotations

import threading
import time

from uptake._delivery import Sender
from uptake._event import Pseudonymiser, Record
from uptake._spool import Spool
from uptake._stats import OVERSIZE, Counters, Failure
from uptake._wire import REQUEST_OVERHEAD_BYTES, pseudonymised, wire_size


class SyncDelivery:
    """Send each event as track() is called, with the same retry rules as the worker."""

    def __init__(
        self,
        *,
        sender: Sender,
        counters: Counters,
        spool: Spool | None,
        pseudonymiser: Pseudonymiser | None,
        max_batch_bytes: int,
    ) -> None:
        self._sender = sender
        self._counters = counters
        self._spool = spool
        self._pseudonymiser = pseudonymiser
        self._max_batch_bytes = max_batch_bytes
        self._lock = threading.Lock()
        self._lost_seen = counters.lost()

    def send(self, record: Record) -> None:
        """Deliver one event now; with a spool, keep it on disk if the server is unreachable."""
        event = pseudonymised(record, self._pseudonymiser)
        if wire_size(event) > self._max_batch_bytes - REQUEST_OVERHEAD_BYTES:
            self._counters.fail(
                Failure(
                    outcome=OVERSIZE,
                    count=1,
                    reason=f"the event is over max_batch_bytes ({self._max_batch_bytes:,})",
                    event_id=event[0].hex(),
                )
            )
            return
        with self._lock:
            if self._spool is not None and not self._replay(deadline=None):
                self._spool.write([event])
                return
            outcome = self._sender.deliver([event], wait=_sleep, retry=self._spool is None)
            if outcome.pending and self._spool is not None:
                self._spool.write(outcome.pending)

    def flush(self, timeout: float) -> bool:
        """Replay the spool within the timeout; say whether everything was delivered."""
        deadline = time.monotonic() + max(timeout, 0)
        with self._lock:
            if self._spool is not None:
                self._replay(deadline=deadline)
            lost = self._counters.lost()
            clean = lost == self._lost_seen and not self.pending_in_spool()
            self._lost_seen = lost
            return clean

    def stop(self, timeout: float) -> bool:
        """Flush: nothing is held in memory in sync mode."""
        return self.flush(timeout)

    def pending_in_spool(self) -> int:
        """Return how many events wait in the spool directory."""
        return self._spool.pending() if self._spool is not None else 0

    def _replay(self, *, deadline: float | None) -> bool:
        """Send spooled batches once each, oldest first; return True when none is left."""
        assert self._spool is not None
        while (entry := self._spool.take()) is not None:
            outcome = self._sender.deliver(
                entry.events, wait=_sleep, deadline=deadline, retry=False, resend=True
            )
            if outcome.pending:
                entry.release()
                return False
            entry.done()
        return True


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True
