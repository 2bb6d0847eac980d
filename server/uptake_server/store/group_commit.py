"""Group commit: concurrent requests share one insert, and each learns when it is stored.

A request hands its columns to `submit()` and waits on the returned future.
A free writer thread takes everything pending, waiting at most `max_delay` for
more rows when fewer than `max_rows` are pending, inserts it in one go and
resolves every future. Throughput comes from batching, and an acknowledgement
still means committed: nothing is buffered beyond the requests that wait for it.

Several writers (`writers`; the service's default is 1) let a request be
inserted while the insert before it is still being written, instead of waiting
for it (docs/performance.md: it helps a few clients that each wait for their
answer, not many independent senders).
Resent events must be looked up among the stored ones, so a batch holding any
waits until no insert is running: the event's first send, if it was in one, is
then stored and found. First sends (marked by the client) need no lookup and
overlap freely.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.trace import SpanContext, Tracer

from uptake_server.errors import StoreOverloaded, StoreUnavailable
from uptake_server.metrics import ServiceMetrics
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.telemetry import attributes as attr
from uptake_server.telemetry.tracing import insert_span

log = logging.getLogger(__name__)


class Inserter(Protocol):
    """What the committer needs of a store."""

    def insert(
        self, events: EventColumns, failed: FailedColumns, *, lookup: list[bytes] | None = None
    ) -> set[bytes]:
        """Store the rows; return the event ids that were stored before.

        Only the ids in `lookup` are checked against stored events (None: all).
        """
        ...


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What happened to one request's events."""

    stored: int
    duplicates: int
    # The span of the insert that stored them, when it was traced.
    insert_span: SpanContext | None = None


@dataclass(slots=True)
class _Pending:
    events: EventColumns
    failed: FailedColumns
    future: Future[CommitResult] = field(default_factory=Future)
    trace: SpanContext | None = None
    first_send: bool = False


class GroupCommitter:
    """Batch concurrent submissions into shared inserts on a few writer threads."""

    def __init__(
        self,
        store: Inserter,
        *,
        max_rows: int,
        max_delay_seconds: float,
        max_pending: int,
        metrics: ServiceMetrics,
        writers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        tracer: Tracer | None = None,
    ) -> None:
        if writers < 1:
            raise ValueError(f"writers must be at least 1, not {writers}")
        self._tracer = tracer
        self._store = store
        self._max_rows = max_rows
        self._max_delay = max_delay_seconds
        self._max_pending = max_pending
        self._metrics = metrics
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._queued_rows = 0
        self._queued_resends = 0  # queued requests whose events need a lookup
        self._pending_rows = 0  # queued plus being inserted
        self._inserting = 0  # inserts running
        self._closing = False
        self._threads = [
            threading.Thread(target=self._run, name=f"uptake-group-commit-{n}", daemon=True)
            for n in range(1, writers + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        events: EventColumns,
        failed: FailedColumns,
        *,
        trace: SpanContext | None = None,
        first_send: bool = False,
    ) -> Future[CommitResult]:
        """Queue rows for the next insert; raise StoreOverloaded when over the bound.

        `trace` is the submitting request's span: the insert span links to it.
        `first_send` says the client sends these events for the first time, so the
        store need not look them up among the events it holds.
        """
        rows = len(events) + len(failed)
        item = _Pending(events, failed, trace=trace, first_send=first_send)
        with self._cond:
            if self._closing:
                raise StoreUnavailable("the server is shutting down", retry_after_seconds=1.0)
            if self._pending_rows and self._pending_rows + rows > self._max_pending:
                raise StoreOverloaded(
                    f"{self._pending_rows} events are waiting for the store "
                    f"(limit {self._max_pending})",
                    retry_after_seconds=1.0,
                )
            self._queue.append(item)
            self._queued_rows += rows
            self._queued_resends += not first_send
            self._pending_rows += rows
            self._metrics.pending.set(self._pending_rows)
            self._cond.notify()
        return item.future

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            log.error("the group-commit writers did not finish within %.1f s", timeout)

    @property
    def _resends_wait(self) -> bool:
        """Tell whether queued resends must wait for the running inserts (lock held)."""
        return bool(self._queued_resends and self._inserting)

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while True:
                if not self._queue:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                if self._resends_wait:
                    self._cond.wait()  # until the running inserts are stored
                    continue
                deadline = self._clock() + self._max_delay
                while self._queued_rows < self._max_rows and not self._closing:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if not self._queue or self._resends_wait:
                    continue  # another writer took them, or a resend came meanwhile
                batch, self._queue = self._queue, []
                self._queued_rows = self._queued_resends = 0
                self._inserting += 1
                return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        events = EventColumns()
        failed = FailedColumns()
        for item in batch:
            events.extend(item.events)
            failed.extend(item.failed)
        rows = len(events) + len(failed)
        started = time.perf_counter()
        traced = insert_span(
            self._tracer, [i.trace for i in batch], events=len(events), failed=len(failed)
        )
        try:
            with traced as span:
                already = self._store.insert(events, failed, lookup=_lookup(batch))
                span.set_attribute(attr.INSERT_DUPLICATES, len(already))
        except BaseException as exc:
            for item in batch:
                item.future.set_exception(exc)
        else:
            self._metrics.insert_duration.observe(time.perf_counter() - started)
            self._metrics.insert_rows.observe(rows)
            context = span.get_span_context()
            self._resolve(batch, already, context if context.is_valid else None)
        finally:
            with self._cond:
                self._pending_rows -= rows
                self._inserting -= 1
                self._metrics.pending.set(self._pending_rows)
                self._cond.notify_all()  # a waiting resend may go now

    @staticmethod
    def _resolve(
        batch: list[_Pending], already: set[bytes], insert: SpanContext | None = None
    ) -> None:
        # An id counts as stored for the first request in the batch that sent
        # it; later occurrences, and ids stored before, are duplicates.
        seen: set[bytes] = set()
        for item in batch:
            duplicates = 0
            for event_id in item.events.event_id:
                if event_id in already or event_id in seen:
                    duplicates += 1
                else:
                    seen.add(event_id)
            item.future.set_result(
                CommitResult(len(item.events) - duplicates, duplicates, insert_span=insert)
            )


def _lookup(batch: list[_Pending]) -> list[bytes] | None:
    """Return the ids to look up among stored events (None: all of them)."""
    if not any(item.first_send for item in batch):
        return None
    return [i for item in batch if not item.first_send for i in item.events.event_id]
