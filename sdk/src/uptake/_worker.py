"""The one background thread of a client: batch, send, retry, spool, flush, stop."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from uptake._delivery import Sender
from uptake._event import Pseudonymiser, Record
from uptake._options import Options
from uptake._spool import Spool
from uptake._stats import OVERSIZE, SHUTDOWN, Counters, Failure
from uptake._wire import REQUEST_OVERHEAD_BYTES, pseudonymised, wire_size

log = logging.getLogger("uptake")
_REPLAY_FILES_PER_ROUND = 8


class Worker:
    """Drain a client's queue on one daemon thread, woken by an Event or a timer."""

    def __init__(
        self,
        queue: deque[Record],
        *,
        options: Options,
        sender: Sender,
        counters: Counters,
        spool: Spool | None,
        pseudonymiser: Pseudonymiser | None,
    ) -> None:
        self._queue = queue
        self._options = options
        self._sender = sender
        self._counters = counters
        self._spool = spool
        self._pseudonymiser = pseudonymiser
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Guards the counts below; flush() and blocked track() calls wait on it.
        self._cv = threading.Condition()
        self._taken = 0  # records taken off the queue
        self._settled = 0  # taken records delivered, dropped or spooled
        self._held: list[Record] = []  # taken, pseudonymised, not yet settled
        self._held_tried = False  # whether the held events may have been sent already
        self._sizes: list[int] = []  # bound of each held event's encoded size
        self._urgent = 0  # flush() calls waiting
        self._deadline: float | None = None
        self._lost_seen = counters.lost()
        self._offline = spool is not None and spool.pending() > 0
        self._next_replay = 0.0
        self._thread = threading.Thread(target=self._run, name="uptake-worker", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Ask the thread to send now (a full batch is waiting); cheap when already asked.

        The thread clears the flag before it takes from the queue, so a flag still set
        means whatever is queued now will be taken. Setting it takes a lock, about 0.7 µs,
        and track() asks on every call while a batch waits.
        """
        if not self._wake.is_set():
            self._wake.set()

    def unsettled(self) -> int:
        """Return how many events were taken off the queue and are not settled yet."""
        with self._cv:
            return self._taken - self._settled

    def wait_for_room(self, timeout: float) -> bool:
        """Wait until the queue has room; return False on timeout."""
        limit = self._options.max_queue_size
        self._wake.set()
        with self._cv:
            return self._cv.wait_for(lambda: len(self._queue) < limit, timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until every record queued before the call is settled; say if all were delivered."""
        with self._cv:
            target = self._taken + len(self._queue)
            self._urgent += 1
        self._wake.set()
        try:
            with self._cv:
                done = self._cv.wait_for(
                    lambda: self._settled >= target and not self._offline, max(timeout, 0)
                )
        finally:
            with self._cv:
                self._urgent -= 1
        return self._report(done)

    def stop(self, timeout: float) -> bool:
        """Deliver what it can within `timeout`, then spool or drop the rest and end the thread."""
        deadline = time.monotonic() + max(timeout, 0)
        if self._thread.is_alive() and self._deadline is None:
            self._deadline = deadline
            self._stop.set()
            self._wake.set()
        # Leave a moment after the deadline to cancel a call in flight and settle.
        self._thread.join(max(deadline - time.monotonic() - 0.05, 0))
        if self._thread.is_alive():
            self._sender.transport.close()
            self._thread.join(max(deadline - time.monotonic(), 0.01))
        return self._report(not self._thread.is_alive())

    def pending_in_spool(self) -> int:
        """Return how many events wait in the spool directory."""
        return self._spool.pending() if self._spool is not None else 0

    def _report(self, settled: bool) -> bool:
        lost = self._counters.lost()
        clean = settled and lost == self._lost_seen and not self.pending_in_spool()
        self._lost_seen = lost
        return clean

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if not stopping:
                    self._wake.wait(self._idle_time())
                self._wake.clear()
                self._drain()
                if stopping:
                    break
        except Exception:
            log.exception("uptake: the background worker failed; events are dropped")
        finally:
            self._finish()

    def _idle_time(self) -> float:
        """Return how long to sleep before the next round, unless woken."""
        idle = self._options.flush_interval
        if self._urgent and (self._queue or self._held):
            return 0.0
        if self._offline:
            idle = min(idle, max(self._next_replay - time.monotonic(), 0.0))
        return idle

    def _drain(self) -> None:
        while True:
            if self._offline:
                self._replay()
            self._take()
            if not self._held:
                return
            count = self._batch_length()
            batch = self._held[:count]
            if self._offline and self._spool is not None:
                self._spool.write(batch)
                self._settle(count)
                continue
            outcome = self._sender.deliver(
                batch,
                wait=self._wait(),
                deadline=self._deadline,
                retry=self._spool is None,
                resend=self._held_tried,
            )
            pending = len(outcome.pending)
            # A pending tail stays held and may have reached the server already.
            self._held_tried = bool(pending)
            if pending and self._spool is not None:
                self._spool.write(outcome.pending)
                self._offline = True
                self._next_replay = time.monotonic() + outcome.retry_after
                pending = 0
            # Delivery settles a prefix of the batch; the pending tail stays held.
            self._settle(count - pending)
            if pending:
                return  # interrupted by stop(): the loop comes back with a deadline

    def _replay(self) -> None:
        spool = self._spool
        assert spool is not None
        # A few files per round, so the queue keeps moving behind a long backlog.
        for _ in range(_REPLAY_FILES_PER_ROUND):
            if time.monotonic() < self._next_replay:
                return
            entry = spool.take()
            if entry is None:
                with self._cv:
                    self._offline = spool.pending() > 0
                    self._cv.notify_all()
                return
            outcome = self._sender.deliver(
                entry.events, wait=self._wait(), deadline=self._deadline, retry=False, resend=True
            )
            if outcome.pending:
                entry.release()
                self._next_replay = time.monotonic() + outcome.retry_after
                return
            entry.done()

    def _take(self) -> None:
        """Top `_held` up to one batch with records from the queue, ready for the wire."""
        wanted = self._options.batch_size - len(self._held)
        if wanted <= 0 or not self._queue:
            return
        with self._cv:
            count = min(len(self._queue), wanted)
            records = [self._queue.popleft() for _ in range(count)]
            self._taken += count
            self._cv.notify_all()
        budget = self._options.max_batch_bytes - REQUEST_OVERHEAD_BYTES
        pseudonymiser = self._pseudonymiser
        for record in records:
            record = pseudonymised(record, pseudonymiser)
            size = wire_size(record)
            if size > budget:
                self._counters.fail(
                    Failure(
                        outcome=OVERSIZE,
                        count=1,
                        reason=f"the event is about {size:,} bytes, over max_batch_bytes "
                        f"({self._options.max_batch_bytes:,}) less {REQUEST_OVERHEAD_BYTES} "
                        "for the request",
                        event_id=record[0].hex(),
                    )
                )
                self._settle_count(1)
            else:
                self._held.append(record)
                self._sizes.append(size)

    def _batch_length(self) -> int:
        """Return how many held events fit in one request (by count and by bytes)."""
        budget = self._options.max_batch_bytes - REQUEST_OVERHEAD_BYTES
        total = 0
        for count, size in enumerate(self._sizes[: self._options.batch_size]):
            total += size
            if total > budget:
                return max(count, 1)
        return min(len(self._held), self._options.batch_size)

    def _settle(self, count: int) -> None:
        del self._held[:count]
        del self._sizes[:count]
        self._settle_count(count)

    def _settle_count(self, count: int) -> None:
        with self._cv:
            self._settled += count
            self._cv.notify_all()

    def _wait(self) -> Callable[[float], bool]:
        """Return how the sender sleeps between tries, given what stop() has said so far."""
        if self._deadline is not None:
            # The sender sleeps only when the next try still starts before the deadline.
            return _sleep
        # No deadline yet: a stop() call cuts the sleep short, and the caller comes
        # back with the deadline.
        return lambda seconds: not self._stop.wait(seconds)

    def _finish(self) -> None:
        """Spool or count as shutdown drops whatever is left."""
        with self._cv:
            records = list(self._queue)
            self._queue.clear()
            self._taken += len(records)
        left = self._held + [pseudonymised(record, self._pseudonymiser) for record in records]
        self._held, self._sizes = [], []
        if left and self._spool is not None:
            self._spool.write(left)
        elif left:
            self._counters.fail(
                Failure(
                    outcome=SHUTDOWN,
                    count=len(left),
                    reason="the client closed before these events could be delivered",
                )
            )
        self._settle_count(len(left))


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True
