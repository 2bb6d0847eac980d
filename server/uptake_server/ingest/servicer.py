"""The gRPC IngestService: translate requests to validation and the store, errors to statuses.

Bad event -> a Rejection in an OK response; malformed request -> INVALID_ARGUMENT
with a BadRequest detail; store down or overloaded -> UNAVAILABLE with RetryInfo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.trace import Tracer

from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.enrich.base import EventFields
from uptake_server.errors import StoreError, StoreOverloaded, StoreUnavailable
from uptake_server.ingest.columns import ColumnsProblem, incoming
from uptake_server.ingest.validation import Limits, batch_id_problem, validate_events
from uptake_server.metrics import ServiceMetrics
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.store.group_commit import CommitResult, GroupCommitter
from uptake_server.telemetry import attributes as attr
from uptake_server.telemetry.tracing import span

log = logging.getLogger(__name__)

# How long a request waits for its commit before answering UNAVAILABLE. The
# events may still be stored; a retry is then deduplicated by event id.
COMMIT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRY_SECONDS = 1.0


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Validate, pseudonymise and store batches; answer after commit."""

    def __init__(
        self,
        *,
        committer: GroupCommitter,
        pseudonymise: Callable[[str], bytes],
        limits: Limits,
        max_events_per_request: int,
        metrics: ServiceMetrics,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        enrich: Callable[[Sequence[EventFields]], None] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer
        self._enrich = enrich
        self._committer = committer
        self._pseudonymise = pseudonymise
        self._limits = limits
        self._max_events = max_events_per_request
        self._metrics = metrics
        self._clock_ms = clock_ms

    def Ingest(
        self, request: ingest_pb2.IngestRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.IngestResponse:
        """Store the valid events of a batch and report the invalid ones."""
        started = time.perf_counter()
        try:
            response = self._ingest(request, context)
        except _Aborted as aborted:
            self._metrics.requests.labels(code=aborted.code.name).inc()
            self._metrics.request_duration.observe(time.perf_counter() - started)
            context.abort_with_status(aborted.status)
        except Exception:
            log.exception("Ingest failed unexpectedly (batch %r)", request.batch_id)
            self._metrics.requests.labels(code="INTERNAL").inc()
            context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
        self._metrics.requests.labels(code="OK").inc()
        self._metrics.request_duration.observe(time.perf_counter() - started)
        return response

    def _ingest(
        self, request: ingest_pb2.IngestRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.IngestResponse:
        try:
            events = incoming(request)
        except ColumnsProblem as malformed:
            _bad_request(malformed.field, malformed.description)
        self._metrics.batch_events.observe(len(events))
        if len(events) > self._max_events:
            _bad_request(
                "columns" if request.HasField("columns") else "events",
                f"{len(events)} events in one request; the limit is {self._max_events}",
            )
        problem = batch_id_problem(request.batch_id)
        if problem is not None:
            _bad_request("batch_id", problem)
        with span(self._tracer, "uptake.validate") as validating:
            if self._enrich is not None:
                self._enrich(events.views())
            result = validate_events(
                events,
                batch_id=request.batch_id,
                now_ms=self._clock_ms(),
                limits=self._limits,
                pseudonymise=self._pseudonymise,
            )
            if validating.is_recording():
                validating.set_attribute(attr.EVENTS_VALID, len(result.events))
                validating.set_attribute(attr.EVENTS_REJECTED, len(result.rejections))
                codes = sorted({r.code for r in result.rejections})
                validating.set_attribute(attr.REJECTION_CODES, codes)
        commit = CommitResult(0, 0)
        if len(result.events) or len(result.failed):
            commit = self._commit(
                result.events, result.failed, request.batch_id, first_send=request.attempt == 1
            )
        for rejection in result.rejections:
            self._metrics.rejections.labels(reason=rejection.code).inc()
        self._metrics.events.labels(outcome="accepted").inc(commit.stored)
        self._metrics.events.labels(outcome="duplicate").inc(commit.duplicates)
        self._metrics.events.labels(outcome="rejected").inc(len(result.rejections))
        return ingest_pb2.IngestResponse(
            accepted=commit.stored + commit.duplicates,
            rejected=len(result.rejections),
            rejections=[
                ingest_pb2.Rejection(index=r.index, field=r.field, reason=r.reason, code=r.code)
                for r in result.rejections
            ],
        )

    def _commit(
        self, events: EventColumns, failed: FailedColumns, batch_id: str, *, first_send: bool
    ) -> CommitResult:
        try:
            rows = {attr.COMMIT_ROWS: len(events) + len(failed)}
            with span(self._tracer, "uptake.commit", attributes=rows) as committing:
                context = committing.get_span_context()
                future = self._committer.submit(
                    events,
                    failed,
                    trace=context if context.is_valid else None,
                    first_send=first_send,
                )
                result = future.result(timeout=COMMIT_TIMEOUT_SECONDS)
                if result.insert_span is not None:
                    committing.add_link(result.insert_span)
                committing.set_attribute(attr.EVENTS_STORED, result.stored)
                committing.set_attribute(attr.EVENTS_DUPLICATE, result.duplicates)
            return result
        except StoreOverloaded as exc:
            _unavailable("the server is overloaded; retry later", exc.retry_after_seconds)
        except StoreUnavailable as exc:
            # The cause names hosts and users: it goes to the log, not to clients.
            log.warning("store unavailable for batch %r: %s", batch_id, exc)
            _unavailable("the store is unavailable; retry later", exc.retry_after_seconds)
        except StoreError as exc:
            log.error("store error for batch %r: %s", batch_id, exc)
            _unavailable("the store failed to commit the events", DEFAULT_RETRY_SECONDS)
        except FutureTimeout:
            _unavailable(
                f"the store did not commit within {COMMIT_TIMEOUT_SECONDS:.0f} s",
                DEFAULT_RETRY_SECONDS,
            )


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, status: grpc.Status) -> None:
        super().__init__(code.name)
        self.code = code
        self.status = status


def _abort(code: grpc.StatusCode, rpc_code: int, message: str, detail: object) -> NoReturn:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    status = status_pb2.Status(code=rpc_code, message=message, details=[packed])
    raise _Aborted(code, rpc_status.to_status(status))


def _bad_request(field: str, description: str) -> NoReturn:
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
        ]
    )
    _abort(grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT, description, detail)


def _unavailable(message: str, retry_after_seconds: float) -> NoReturn:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(int(retry_after_seconds * 1000))
    detail = error_details_pb2.RetryInfo(retry_delay=delay)
    _abort(grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE, message, detail)
