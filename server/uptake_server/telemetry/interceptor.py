"""The outermost interceptor of Ingest: a request id for the logs and, with tracing, a server span.

It runs before the guard, so refusals (no key, over a limit, a malformed request)
are logged and traced like every other answer. The request id is the request's
batch_id when it has a usable one (so a retried batch keeps its id), else a fresh
random one. The span continues a W3C trace context the caller sends in its
metadata (traceparent, tracestate), and carries counts and the status code only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry.propagate import extract
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Tracer

from uptake.v1 import ingest_pb2
from uptake_server.ingest.columns import event_count
from uptake_server.ingest.validation import batch_id_problem
from uptake_server.telemetry import attributes as attr
from uptake_server.telemetry.context import bind_request_id, new_request_id, unbind_request_id
from uptake_server.telemetry.tracing import mark_failed

SERVICE = "uptake.v1.IngestService"
METHOD = "Ingest"
INGEST_METHOD = f"/{SERVICE}/{METHOD}"
SPAN_NAME = f"{SERVICE}/{METHOD}"
# Server faults, per the OpenTelemetry conventions for gRPC server spans; the
# others (a bad request, a missing key) are the caller's and leave the status unset.
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

Behavior = Callable[[Any, grpc.ServicerContext], Any]

log = logging.getLogger(__name__)


def request_id_of(request: object) -> str:
    """Return the request id of a decoded request: its batch_id if usable, else a new one."""
    if isinstance(request, ingest_pb2.IngestRequest):
        batch_id = request.batch_id
        if batch_id and batch_id.isprintable() and batch_id_problem(batch_id) is None:
            return batch_id
    return new_request_id()


class RequestInterceptor(grpc.ServerInterceptor):
    """Give every Ingest call a request id in the log context and a span when tracing."""

    def __init__(self, *, tracer: Tracer | None) -> None:
        self._tracer = tracer

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the Ingest handler, unary or (a guard's refusal) request-streaming."""
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method != INGEST_METHOD:
            return handler
        if handler.unary_unary is not None:
            inner, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        elif handler.stream_unary is not None:
            inner, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        else:
            return handler

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            return self._serve(inner, request, context)

        return factory(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _serve(self, inner: Behavior, request: Any, context: grpc.ServicerContext) -> Any:
        request_id = request_id_of(request)
        token = bind_request_id(request_id)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            with _request_span(self._tracer, request, context, request_id) as current:
                try:
                    response = inner(request, context)
                except BaseException as exc:
                    code = status_of(exc, context)
                    _failed(current, code, context, exc)
                    raise
                finally:
                    # Inside the span, so the line carries its trace id.
                    if log.isEnabledFor(logging.DEBUG):
                        _log_answer(code, request, started)
                current.set_attribute(attr.RPC_GRPC_STATUS_CODE, code.value[0])
                if isinstance(response, ingest_pb2.IngestResponse) and current.is_recording():
                    current.set_attribute(attr.EVENTS_ACCEPTED, response.accepted)
                    current.set_attribute(attr.EVENTS_REJECTED, response.rejected)
                return response
        finally:
            unbind_request_id(token)


def status_of(exc: BaseException, context: grpc.ServicerContext) -> grpc.StatusCode:
    """Return the status code a call ends with when its behavior raised `exc`."""
    # An abort raises a bare Exception once the status code is recorded.
    aborted = type(exc) is Exception
    code = context.code() if aborted else None  # type: ignore[attr-defined]
    return code or grpc.StatusCode.UNKNOWN


@contextmanager
def _request_span(
    tracer: Tracer | None, request: Any, context: grpc.ServicerContext, request_id: str
) -> Iterator[Span]:
    if tracer is None:
        yield INVALID_SPAN
        return
    attributes: dict[str, str | int] = {
        attr.RPC_SYSTEM: "grpc",
        attr.RPC_SERVICE: SERVICE,
        attr.RPC_METHOD: METHOD,
        attr.REQUEST_ID: request_id,
    }
    if isinstance(request, ingest_pb2.IngestRequest):
        attributes[attr.REQUEST_EVENTS] = event_count(request)
    # Only the W3C propagation keys are read from the metadata: never the API key.
    carrier = {key: value for key, value in context.invocation_metadata() or ()}
    with tracer.start_as_current_span(
        SPAN_NAME,
        context=extract(carrier),
        kind=SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        yield current


def _failed(
    current: Span,
    code: grpc.StatusCode,
    context: grpc.ServicerContext,
    exc: BaseException,
) -> None:
    current.set_attribute(attr.RPC_GRPC_STATUS_CODE, code.value[0])
    aborted = type(exc) is Exception
    error_type = code.name if aborted else type(exc).__name__
    if code not in SERVER_FAULTS:
        current.set_attribute(attr.ERROR_TYPE, error_type)
        return
    # The details of an abort are Uptake's own status messages, never an event's field.
    details = context.details() if aborted else None  # type: ignore[attr-defined]
    text = details.decode("utf-8", "replace") if isinstance(details, bytes) else details
    mark_failed(current, error_type, f"{code.name}: {text}" if text else code.name)


def _log_answer(code: grpc.StatusCode, request: Any, started: float) -> None:
    size = event_count(request) if isinstance(request, ingest_pb2.IngestRequest) else 0
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.debug("Ingest answered %s in %.1f ms (%d events)", code.name, elapsed_ms, size)
