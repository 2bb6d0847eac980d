"""A scripted Uptake ingestion server on loopback gRPC, for faults the real one cannot make.

Each request takes the next behaviour from `script` (or `ok` when it is empty).
The server keeps events by event_id, like the real store, so tests can count
events stored exactly once across retries.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from uptake import RecordedEvent
from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse

Behaviour = Callable[[IngestRequest, grpc.ServicerContext, "FakeServer"], IngestResponse]


@dataclass
class Received:
    """One request as the server saw it."""

    at: float
    request: IngestRequest
    metadata: dict[str, str]

    @property
    def events(self) -> list[RecordedEvent]:
        """Return the request's events, whichever form it carried them in."""
        return RecordedEvent.of_request(self.request)


def ok(request: IngestRequest, context: grpc.ServicerContext, server: FakeServer) -> IngestResponse:
    """Store every event and acknowledge it."""
    events = RecordedEvent.of_request(request)
    server.store(events)
    return IngestResponse(accepted=len(events))


def unavailable(retry_after: float | None = None) -> Behaviour:
    """Answer UNAVAILABLE, with a RetryInfo detail when `retry_after` is given."""

    def behave(
        request: IngestRequest, context: grpc.ServicerContext, server: FakeServer
    ) -> IngestResponse:
        status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="store down")
        if retry_after is not None:
            info = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(
                    seconds=int(retry_after), nanos=int(retry_after % 1 * 1e9)
                )
            )
            detail = any_pb2.Any()
            detail.Pack(info)
            status.details.append(detail)
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("unreachable")

    return behave


def fail(code: grpc.StatusCode, message: str = "scripted failure") -> Behaviour:
    """Answer with a status code and no details."""

    def behave(
        request: IngestRequest, context: grpc.ServicerContext, server: FakeServer
    ) -> IngestResponse:
        context.abort(code, message)
        raise AssertionError("unreachable")

    return behave


def slow(seconds: float) -> Behaviour:
    """Store the events, but answer only after `seconds` (the client may have given up)."""

    def behave(
        request: IngestRequest, context: grpc.ServicerContext, server: FakeServer
    ) -> IngestResponse:
        events = RecordedEvent.of_request(request)
        server.store(events)
        time.sleep(seconds)
        return IngestResponse(accepted=len(events))

    return behave


def reject(*indexes: int) -> Behaviour:
    """Store all events but those at `indexes`, which are rejected."""

    def behave(
        request: IngestRequest, context: grpc.ServicerContext, server: FakeServer
    ) -> IngestResponse:
        events = RecordedEvent.of_request(request)
        server.store(e for i, e in enumerate(events) if i not in indexes)
        rejections = [
            ingest_pb2.Rejection(index=i, field="action", reason="scripted", code="invalid_slug")
            for i in indexes
        ]
        return IngestResponse(
            accepted=len(events) - len(indexes),
            rejected=len(indexes),
            rejections=rejections,
        )

    return behave


@dataclass
class FakeServer(ingest_pb2_grpc.IngestServiceServicer):
    """The scripted server; use as a context manager."""

    port: int = 0
    credentials: grpc.ServerCredentials | None = None  # TLS when given
    max_events: int | None = None  # more events per request: RESOURCE_EXHAUSTED
    script: deque[Behaviour] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    stored: dict[bytes, RecordedEvent] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    @property
    def target(self) -> str:
        """Return host:port."""
        return f"127.0.0.1:{self.port}"

    def store(self, events: Iterable[RecordedEvent]) -> None:
        """Keep events by id, as the real store deduplicates them."""
        with self._lock:
            for event in events:
                self.stored.setdefault(event.event_id.bytes, event)

    def Ingest(self, request: IngestRequest, context: grpc.ServicerContext) -> IngestResponse:
        """Record the request and play the next scripted behaviour."""
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        with self._lock:
            self.received.append(Received(time.monotonic(), request, metadata))
            behaviour = self.script.popleft() if self.script else ok
        if self.max_events is not None and len(RecordedEvent.of_request(request)) > self.max_events:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large")
        return behaviour(request, context, self)

    def start(self) -> FakeServer:
        """Serve on the port (a free one when 0)."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(self, server)
        if self.credentials is None:
            self.port = server.add_insecure_port(self.target)
        else:
            self.port = server.add_secure_port(self.target, self.credentials)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop at once, cancelling calls in progress."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
