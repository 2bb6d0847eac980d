"""The guard in front of IngestService: who may call, what they may write, how much at once.

A gRPC server interceptor. For each Ingest call, in this order:

1. authentication from the ``authorization: Bearer <key>`` metadata, before the
   request is even read (UNAUTHENTICATED, the same answer for every kind of bad key);
2. a call slot, then the raw request size against the in-flight byte bound, both
   before the request is decoded, then its event count (UNAVAILABLE + RetryInfo);
3. decoding, with a precise INVALID_ARGUMENT when the bytes are not a request;
4. the key's tool scope: one event of a tool the key may not write refuses the
   whole request (PERMISSION_DENIED), so nothing of it is stored, not even as a
   failed event;
5. the key's rate limit (UNAVAILABLE + RetryInfo), and only then the service.

A key needs the ``ingest`` permission for Ingest. ActivityService calls are
authenticated the same way and need the ``activities`` permission; the caller is
then bound to `current_caller()` for the servicer, which applies the key's tool
scope. Health and reflection stay open: probes and grpcurl carry no key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from uptake.v1 import ingest_pb2
from uptake_server.ingest.columns import event_count, tools
from uptake_server.limits import InflightLimits, Ticket
from uptake_server.metrics import ServiceMetrics
from uptake_server.security.keyfile import KeyFile
from uptake_server.security.keys import ACTIVITIES, INGEST, PERMISSIONS
from uptake_server.security.ratelimit import RateLimiter
from uptake_server.security.status import (
    Refusal,
    invalid_argument,
    permission_denied,
    unauthenticated,
    unavailable,
)
from uptake_server.security.wire import diagnose

log = logging.getLogger(__name__)

INGEST_METHOD = "/uptake.v1.IngestService/Ingest"
ACTIVITY_METHODS = "/uptake.v1.ActivityService/"
MISSING_KEY = "this server requires an API key: send the call metadata authorization: Bearer <key>"
# One answer for a malformed, unknown, revoked or wrong key: it tells a guesser nothing.
INVALID_KEY = "the API key is not valid"
OVERLOAD_RETRY_SECONDS = 1.0

Behavior = Callable[[Any, grpc.ServicerContext], Any]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a key id, the tools it may write (None: every tool), its rate."""

    key_id: str
    tools: frozenset[str] | None
    events_per_second: float | None = None
    permissions: frozenset[str] = frozenset(PERMISSIONS)

    def may_touch(self, tool: str) -> bool:
        """Tell whether the caller's tool scope covers a tool."""
        return self.tools is None or tool in self.tools


OPEN_ACCESS = Caller("open-access", None)
_CALLER: ContextVar[Caller] = ContextVar("uptake_caller", default=OPEN_ACCESS)


def current_caller() -> Caller:
    """Return who makes the ActivityService call being served (open access outside one)."""
    return _CALLER.get()


def decode_request(raw: bytes) -> ingest_pb2.IngestRequest | Refusal:
    """Decode an IngestRequest, or return INVALID_ARGUMENT naming where the bytes break."""
    try:
        return ingest_pb2.IngestRequest.FromString(raw)
    except DecodeError:
        field, problem = diagnose(raw)
        return invalid_argument(field, problem)
    except Exception:  # a parser failure other than bad input is still the input's fault
        log.exception("decoding a request failed unexpectedly")
        return invalid_argument("", "the request is not a valid uptake.v1.IngestRequest")


class IngestGuard(grpc.ServerInterceptor):
    """Authenticate, bound, decode, authorise and rate-limit every Ingest call."""

    def __init__(
        self,
        *,
        keys: KeyFile | None,
        limits: InflightLimits,
        rate_limiter: RateLimiter,
        metrics: ServiceMetrics,
    ) -> None:
        self._keys = keys
        self._limits = limits
        self._rates = rate_limiter
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the Ingest handler; pass every other method through."""
        handler = continuation(handler_call_details)
        if handler is not None and handler_call_details.method.startswith(ACTIVITY_METHODS):
            return self._activities(handler, handler_call_details)
        if handler is None or handler_call_details.method != INGEST_METHOD:
            return handler
        inner: Behavior | None = handler.unary_unary
        if inner is None:
            return handler
        caller = self._authenticate(handler_call_details.invocation_metadata)
        if not isinstance(caller, Refusal) and INGEST not in caller.permissions:
            caller = permission_denied("this API key may not send events (no ingest permission)")
        if isinstance(caller, Refusal):
            return self._refuse(caller, handler)
        ticket = self._limits.admit()
        if ticket is None:
            calls = self._limits.bounds.calls
            refusal = unavailable(
                f"the server is busy ({calls} requests in flight); retry later",
                retry_after_seconds=OVERLOAD_RETRY_SECONDS,
            )
            return self._refuse(refusal, handler)

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            return self._serve(inner, caller, ticket, request, context)

        def decode(raw: bytes) -> Any:
            return self._decode(ticket, raw)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=decode, response_serializer=handler.response_serializer
        )

    def _authenticate(self, metadata: Sequence[tuple[str, Any]] | None) -> Caller | Refusal:
        if self._keys is None:
            return OPEN_ACCESS
        values = [value for name, value in metadata or () if name == "authorization"]
        if not values:
            return unauthenticated(MISSING_KEY)
        scheme, _, token = str(values[0]).partition(" ")
        if len(values) != 1 or scheme.lower() != "bearer":
            return unauthenticated(INVALID_KEY)
        key = self._keys.current().verify(token.strip())
        if key is None:
            return unauthenticated(INVALID_KEY)
        return Caller(
            key.id, None if key.all_tools else key.tools, key.events_per_second, key.permissions
        )

    def _activities(
        self, handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Authenticate an ActivityService call and bind its caller while it is served."""
        serve: Behavior | None = handler.unary_unary
        if serve is None:
            return handler
        caller = self._authenticate(details.invocation_metadata)
        if not isinstance(caller, Refusal) and ACTIVITIES not in caller.permissions:
            caller = permission_denied(
                "this API key may not record activities (no activities permission)"
            )
        if isinstance(caller, Refusal):
            refusal = caller

            def refuse(requests: Any, context: grpc.ServicerContext) -> Any:
                context.abort_with_status(refusal.status)

            return grpc.stream_unary_rpc_method_handler(
                refuse, response_serializer=handler.response_serializer
            )

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            token = _CALLER.set(caller)
            try:
                return serve(request, context)
            finally:
                _CALLER.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _decode(self, ticket: Ticket, raw: bytes) -> ingest_pb2.IngestRequest | Refusal:
        # Runs on gRPC's polling thread: it must never raise (gRPC would answer
        # INTERNAL and log a traceback for every hostile request).
        if not ticket.add_bytes(len(raw)):
            return unavailable(
                f"the server holds its limit of {self._limits.bounds.bytes} request bytes; "
                "retry later",
                retry_after_seconds=OVERLOAD_RETRY_SECONDS,
            )
        request = decode_request(raw)
        if isinstance(request, Refusal):
            return request
        if not ticket.add_events(event_count(request)):
            return unavailable(
                f"the server holds its limit of {self._limits.bounds.events} events; retry later",
                retry_after_seconds=OVERLOAD_RETRY_SECONDS,
            )
        return request

    def _serve(
        self,
        inner: Behavior,
        caller: Caller,
        ticket: Ticket,
        request: ingest_pb2.IngestRequest | Refusal,
        context: grpc.ServicerContext,
    ) -> Any:
        try:
            if isinstance(request, Refusal):
                self._abort(context, request)
            refusal = self._authorise(caller, request) or self._limit_rate(caller, request)
            if refusal is not None:
                self._abort(context, refusal)
            return inner(request, context)
        finally:
            ticket.release()

    @staticmethod
    def _authorise(caller: Caller, request: ingest_pb2.IngestRequest) -> Refusal | None:
        allowed = caller.tools
        if allowed is None:
            return None
        for where, tool in tools(request):
            # An empty tool is left to validation, which rejects it as missing.
            if tool and tool not in allowed:
                log.debug("key %s refused for tool %.64r", caller.key_id, tool)
                return permission_denied(
                    f"this API key may not send events of tool {tool[:64]!r} ({where})"
                )
        return None

    def _limit_rate(self, caller: Caller, request: ingest_pb2.IngestRequest) -> Refusal | None:
        rate = caller.events_per_second
        wait = self._rates.take(caller.key_id, event_count(request), rate=rate)
        if not wait:
            return None
        limit = rate or self._rates.default_rate
        return unavailable(
            f"this API key is over its rate limit of {limit:g} events/s; retry later",
            retry_after_seconds=wait,
        )

    def _abort(self, context: grpc.ServicerContext, refusal: Refusal) -> NoReturn:
        self._metrics.requests.labels(code=refusal.code.name).inc()
        context.abort_with_status(refusal.status)

    def _refuse(
        self, refusal: Refusal, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Answer without reading the request: a request-streaming handler never has to."""

        def behavior(requests: Any, context: grpc.ServicerContext) -> Any:
            self._abort(context, refusal)

        return grpc.stream_unary_rpc_method_handler(
            behavior, response_serializer=handler.response_serializer
        )
