"""Deliver batches with OTLP's retry rules, and account for every event's outcome."""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from uptake._errors import TransportError
from uptake._event import Record
from uptake._options import Options
from uptake._stats import (
    DELIVERED,
    OVERSIZE,
    REJECTED,
    RETRIES_EXHAUSTED,
    Counters,
    Failure,
)
from uptake._transport import Transport
from uptake._wire import to_proto, to_request
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse, Rejection

log = logging.getLogger("uptake")

# Status codes worth retrying (OTLP): the request may succeed later unchanged.
RETRYABLE = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)

Wait = Callable[[float], bool]


@dataclass
class Outcome:
    """What is left of a delivery: events still pending, and when to try them again."""

    pending: list[Record] = field(default_factory=list)
    retry_after: float = 0.0


class Sender:
    """Send batches through a transport, retrying as the server allows."""

    def __init__(self, transport: Transport, options: Options, counters: Counters) -> None:
        self.transport = transport
        self._options = options
        self._counters = counters
        self._streak = 0  # consecutive retryable failures, for the backoff
        self._rows = False  # the server predates column-wise requests

    def backoff(self, retry_after: float | None) -> float:
        """Return the delay before the next try: the server's, else exponential with jitter."""
        if retry_after is not None:
            return retry_after
        options = self._options
        ceiling = min(options.retry_max, options.retry_initial * 2 ** min(self._streak - 1, 62))
        return random.uniform(0, ceiling)

    def deliver(
        self,
        events: Sequence[Record],
        *,
        wait: Wait,
        deadline: float | None = None,
        retry: bool = True,
        resend: bool = False,
    ) -> Outcome:
        """Send the events in order; return those neither delivered nor dropped.

        With `retry=False` the first retryable failure returns the rest as pending (the
        caller spools them). `wait(seconds)` sleeps between tries and returns False to
        stop early; `deadline` (monotonic) bounds the whole delivery. `resend` says the
        events may have been sent before (the server then checks for duplicates).
        """
        chunks: deque[list[Record]] = deque([list(events)] if events else [])
        attempt = 2 if resend else 1
        while chunks:
            chunk = chunks.popleft()
            started = time.monotonic()
            while True:
                timeout = self._options.request_timeout
                if deadline is not None:
                    timeout = min(timeout, deadline - time.monotonic())
                    if timeout <= 0:
                        return Outcome(pending=_join(chunk, chunks))
                try:
                    response = self.transport.send(self._request(chunk, attempt), timeout=timeout)
                except TransportError as error:
                    # Whatever the error, the server may have stored some of the
                    # events: every later send of them is a resend.
                    attempt += 1
                    delay = self._failed(error, chunk, chunks)
                    if delay is None:
                        break  # settled: split, or dropped for good
                    if not retry:
                        return Outcome(pending=_join(chunk, chunks), retry_after=delay)
                    if time.monotonic() + delay - started > self._options.retry_max_elapsed:
                        self._counters.fail(
                            Failure(
                                outcome=RETRIES_EXHAUSTED,
                                count=len(chunk),
                                reason=f"gave up after {self._options.retry_max_elapsed:g} s "
                                f"of retries; last error {error}",
                                code=error.code,
                            )
                        )
                        break
                    if deadline is not None and time.monotonic() + delay >= deadline:
                        return Outcome(pending=_join(chunk, chunks), retry_after=delay)
                    if not wait(delay):
                        return Outcome(pending=_join(chunk, chunks), retry_after=delay)
                    continue
                self._streak = 0
                if self._predates_columns(chunk, response):
                    attempt += 1
                    continue
                self._account(chunk, response)
                break
        return Outcome()

    def _request(self, chunk: list[Record], attempt: int) -> IngestRequest:
        if self._rows:
            return IngestRequest(events=[to_proto(record) for record in chunk], attempt=attempt)
        return to_request(chunk, attempt)

    def _predates_columns(self, chunk: list[Record], response: IngestResponse) -> bool:
        """Tell whether the answer comes from a server that ignored the columns.

        A server that reads columns accounts for every event, accepted or rejected;
        one that predates them sees an empty request and answers 0 and 0. From then
        on this sender sends one message per event; the resend is deduplicated.
        """
        if self._rows or not chunk or response.accepted or response.rejected or response.rejections:
            return False
        log.warning(
            "uptake: the server answered a column-wise request of %d events as empty: it "
            "predates them; sending one message per event from now on",
            len(chunk),
        )
        self._rows = True
        return True

    def _failed(
        self, error: TransportError, chunk: list[Record], chunks: deque[list[Record]]
    ) -> float | None:
        """Handle a failed try; return the delay before retrying, or None when settled."""
        if error.code == "RESOURCE_EXHAUSTED" and error.retry_after is None:
            # Too large for the server: never retry as is; halve until it fits.
            if len(chunk) > 1:
                middle = len(chunk) // 2
                chunks.extendleft([chunk[middle:], chunk[:middle]])
                return None
            self._counters.fail(
                Failure(
                    outcome=OVERSIZE,
                    count=1,
                    reason=f"the server refused the event as too large: {error.message}",
                    code=error.code,
                    event_id=chunk[0][0].hex(),
                )
            )
            return None
        if error.code not in RETRYABLE and error.code != "RESOURCE_EXHAUSTED":
            self._counters.fail(
                Failure(
                    outcome=REJECTED,
                    count=len(chunk),
                    reason=f"the server refused the batch: {error.message}",
                    code=error.code,
                )
            )
            return None
        self._streak += 1
        delay = self.backoff(error.retry_after)
        log.info("uptake: send failed (%s); retrying in %.2f s", error, delay)
        return delay

    def _account(self, chunk: list[Record], response: IngestResponse) -> None:
        first: dict[int, Rejection] = {}
        for rejection in response.rejections:
            if rejection.index < len(chunk):
                first.setdefault(rejection.index, rejection)
        self._counters.add(DELIVERED, len(chunk) - len(first))
        for rejection in first.values():
            self._counters.fail(
                Failure(
                    outcome=REJECTED,
                    count=1,
                    reason=rejection.reason,
                    code=rejection.code,
                    field=rejection.field,
                    event_id=chunk[rejection.index][0].hex(),
                )
            )


def _join(chunk: list[Record], chunks: deque[list[Record]]) -> list[Record]:
    return chunk + [event for rest in chunks for event in rest]
