"""An in-memory transport, so applications can assert on their events in their own tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from uptake._errors import TransportError
from uptake._wire import records_of
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse

Responder = Callable[[IngestRequest], IngestResponse]


@dataclass(frozen=True, kw_only=True)
class RecordedEvent:
    """One event as the server would have received it."""

    event_id: uuid.UUID
    occurred_at: datetime
    tool: str
    action: str
    user_id: str
    org_unit: str
    feature: str
    client: str
    properties: dict[str, str]

    @classmethod
    def of_request(cls, request: IngestRequest) -> list[RecordedEvent]:
        """Return the events of a request, sent column-wise or one message each."""
        if request.HasField("columns"):
            clients = request.columns.client[:] or [""] * len(request.columns.event_id)
        else:
            clients = [event.client for event in request.events]
        return [
            cls(
                event_id=uuid.UUID(bytes=event_id),
                occurred_at=datetime.fromtimestamp(ms / 1000, tz=timezone.utc),  # noqa: UP017 - Python 3.10
                tool=tool,
                action=action,
                user_id=user_id,
                org_unit=org_unit or "",
                feature=feature or "",
                client=client,
                properties=dict(properties or ()),
            )
            for (event_id, ms, tool, action, user_id, org_unit, feature, properties), client in zip(
                records_of(request), clients, strict=True
            )
        ]


class InMemoryTransport:
    """Accept every request and keep its events in memory.

    Pass it as `Client(transport=...)`. `respond`, if given, answers each request
    instead: return an IngestResponse (with rejections, say) or raise TransportError
    to play a failing server. `events` lists the events the server accepted.
    """

    def __init__(self, *, respond: Responder | None = None) -> None:
        self._respond = respond
        self._lock = threading.Lock()
        self._requests: list[IngestRequest] = []
        self._accepted: list[RecordedEvent] = []
        self._closed = False

    @property
    def requests(self) -> list[IngestRequest]:
        """Return every request sent so far, including failed tries."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[RecordedEvent]:
        """Return the accepted events, in the order they were sent."""
        with self._lock:
            return list(self._accepted)

    def clear(self) -> None:
        """Forget the requests and events recorded so far."""
        with self._lock:
            self._requests.clear()
            self._accepted.clear()

    def send(self, request: IngestRequest, *, timeout: float) -> IngestResponse:
        """Record a request and answer it."""
        copy = IngestRequest()
        copy.CopyFrom(request)
        with self._lock:
            if self._closed:
                raise TransportError("CANCELLED", "the transport is closed")
            self._requests.append(copy)
        events = RecordedEvent.of_request(copy)
        response = (
            self._respond(copy)
            if self._respond is not None
            else IngestResponse(accepted=len(events))
        )
        rejected = {rejection.index for rejection in response.rejections}
        with self._lock:
            self._accepted.extend(
                event for index, event in enumerate(events) if index not in rejected
            )
        return response

    def close(self) -> None:
        """Refuse later requests."""
        with self._lock:
            self._closed = True

    def after_fork(self) -> None:
        """Start the child's own lock (the recordings are inherited)."""
        self._lock = threading.Lock()
