"""Spans of the real gRPC server in-process, recorded by the SDK's in-memory exporter."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from tests.server.telemetry.conftest import PROPERTY_VALUE, RAW_USER, Spans, text_of
from tests.server.test_service import DownStore, event, settings_for
from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.app import Service, create_server
from uptake_server.ingest.servicer import IngestServicer
from uptake_server.ingest.validation import Limits
from uptake_server.metrics import ServiceMetrics
from uptake_server.store.group_commit import GroupCommitter

INGEST = "uptake.v1.IngestService/Ingest"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def send(
    target: str,
    events: Sequence[ingest_pb2.Event],
    *,
    batch_id: str = "",
    key: str | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> grpc.StatusCode:
    """Send one request; return its status code."""
    headers = [*metadata, *([("authorization", f"Bearer {key}")] if key else [])]
    with grpc.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        try:
            stub.Ingest(
                ingest_pb2.IngestRequest(batch_id=batch_id, events=events),
                metadata=headers,
                timeout=30,
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


def private_event(**changes: object) -> ingest_pb2.Event:
    """Return an event carrying a raw user id and a property value."""
    fields: dict[str, object] = {
        "user_id": RAW_USER,
        "property_keys": ["plan"],
        "property_values": [PROPERTY_VALUE],
    }
    fields.update(changes)
    return event(**fields)


def assert_private(recorded: Sequence[ReadableSpan], *secrets: str) -> None:
    assert recorded
    for span in recorded:
        text = text_of(span)
        for secret in (RAW_USER, PROPERTY_VALUE, *secrets):
            assert secret not in text, f"{secret!r} in span {span.name}:\n{text}"


def test_a_request_is_traced_through_validation_commit_and_insert(
    traced: Service, spans: Spans, api_key: tuple[Path, str]
) -> None:
    events = [private_event(), private_event(), private_event(action="")]
    code = send(traced.grpc_target, events, batch_id="batch-0001", key=api_key[1])
    assert code == grpc.StatusCode.OK
    (request,) = spans.named(INGEST)
    assert request.kind == SpanKind.SERVER
    assert request.parent is None
    assert request.status.status_code == StatusCode.UNSET
    assert dict(request.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "uptake.v1.IngestService",
        "rpc.method": "Ingest",
        "rpc.grpc.status_code": 0,
        "uptake.request_id": "batch-0001",
        "uptake.request.events": 3,
        "uptake.events.accepted": 2,
        "uptake.events.rejected": 1,
    }
    validate, commit = sorted(spans.children(request), key=lambda s: s.start_time or 0)
    assert validate.name == "uptake.validate"
    assert validate.attributes == {
        "uptake.events.valid": 2,
        "uptake.events.rejected": 1,
        "uptake.rejection.codes": ("missing",),
    }
    assert commit.name == "uptake.commit"
    assert commit.attributes == {
        "uptake.commit.rows": 3,
        "uptake.events.stored": 2,
        "uptake.events.duplicate": 0,
    }
    (insert,) = spans.children(commit)
    assert insert.name == "uptake.store.insert"
    assert insert.kind == SpanKind.CLIENT
    assert insert.context.trace_id == request.context.trace_id
    assert [link.context for link in insert.links] == [commit.context]
    assert [link.context for link in commit.links] == [insert.context]
    assert insert.attributes == {
        "db.system.name": "clickhouse",
        "db.operation.name": "INSERT",
        "uptake.insert.events": 2,
        "uptake.insert.failed_events": 1,
        "uptake.insert.requests": 1,
        "uptake.insert.duplicates": 0,
    }
    assert len(spans.all()) == 4
    assert_private(spans.all(), api_key[1])


def test_the_callers_trace_context_is_continued_and_its_sampling_decision_kept(
    traced: Service, spans: Spans, api_key: tuple[Path, str]
) -> None:
    sampled = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")]
    assert send(traced.grpc_target, [event()], key=api_key[1], metadata=sampled) == (
        grpc.StatusCode.OK
    )
    (request,) = spans.named(INGEST)
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert request.parent is not None and f"{request.parent.span_id:016x}" == PARENT_ID
    assert {f"{s.context.trace_id:032x}" for s in spans.all()} == {TRACE_ID}
    assert len(spans.all()) == 4
    spans.clear()
    unsampled = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00")]
    assert send(traced.grpc_target, [event()], key=api_key[1], metadata=unsampled) == (
        grpc.StatusCode.OK
    )
    # Not the request, nor the insert that served only it.
    assert spans.all() == []


def test_requests_that_share_an_insert_are_linked_to_it(tmp_path: Path, spans: Spans) -> None:
    # A long group-commit wait makes concurrent requests share one insert.
    settings = settings_for(tmp_path / "var", commit_max_delay_ms=500)
    service = Service(settings, telemetry=spans.telemetry)
    service.start()
    try:
        barrier = threading.Barrier(4)

        def client(n: int) -> None:
            barrier.wait()
            send(service.grpc_target, [event() for _ in range(n + 1)], batch_id=f"b{n}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        service.stop()
    commits = {s.context.span_id: s for s in spans.named("uptake.commit")}
    assert len(commits) == 4
    inserts = spans.named("uptake.store.insert")
    assert max(len(i.links) for i in inserts) >= 2, "no insert served two requests"
    linked = [link.context.span_id for i in inserts for link in i.links]
    assert sorted(linked) == sorted(commits), "each request is linked from exactly one insert"
    for insert in inserts:
        assert insert.parent is not None
        assert insert.parent.span_id in {link.context.span_id for link in insert.links}
        assert insert.attributes is not None
        assert insert.attributes["uptake.insert.requests"] == len(insert.links)
        assert insert.attributes["uptake.insert.events"] == sum(
            commits[link.context.span_id].attributes["uptake.commit.rows"]  # type: ignore[index]
            for link in insert.links
        )
        for link in insert.links:
            assert [back.context for back in commits[link.context.span_id].links] == [
                insert.context
            ]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no key", grpc.StatusCode.UNAUTHENTICATED),
        ("tool not allowed", grpc.StatusCode.PERMISSION_DENIED),
        ("too many events", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_refusals_are_traced_with_their_code_and_no_error_status(
    traced: Service, spans: Spans, api_key: tuple[Path, str], case: str, code: grpc.StatusCode
) -> None:
    key: str | None = api_key[1]
    events = [private_event()]
    if case == "no key":
        key = None
    elif case == "tool not allowed":
        events = [private_event(tool="chat")]
    else:
        events = [private_event() for _ in range(51)]
    assert send(traced.grpc_target, events, batch_id="refused-1", key=key) == code
    # A caller's fault is not the server's: the status stays unset, as the
    # OpenTelemetry conventions for gRPC server spans say.
    (request,) = spans.all()
    assert request.name == INGEST
    assert request.status.status_code == StatusCode.UNSET
    assert request.attributes is not None
    assert request.attributes["rpc.grpc.status_code"] == code.value[0]
    assert request.attributes["error.type"] == code.name
    request_id = request.attributes["uptake.request_id"]
    if case == "no key":  # refused before the request was read: a fresh id
        assert isinstance(request_id, str) and len(request_id) == 16 and request_id != "refused-1"
    else:
        assert request_id == "refused-1"
    assert_private([request], api_key[1])


def test_a_store_outage_marks_request_commit_and_insert_failed(
    tmp_path: Path, spans: Spans
) -> None:
    metrics = ServiceMetrics(registry=CollectorRegistry())
    tracer = spans.telemetry.tracer
    committer = GroupCommitter(
        DownStore(),
        max_rows=100,
        max_delay_seconds=0,
        max_pending=1000,
        metrics=metrics,
        tracer=tracer,
    )
    servicer = IngestServicer(
        committer=committer,
        pseudonymise=lambda u: u.encode().ljust(16, b"_")[:16],
        limits=Limits(),
        max_events_per_request=100,
        metrics=metrics,
        tracer=tracer,
    )
    server, port = create_server(
        settings_for(tmp_path / "var"),
        servicer=servicer,
        health_servicer=health.HealthServicer(),
        telemetry=spans.telemetry,
    )
    server.start()
    try:
        code = send(f"127.0.0.1:{port}", [private_event()], batch_id="down-1")
    finally:
        server.stop(None).wait()
        committer.close()
    assert code == grpc.StatusCode.UNAVAILABLE
    (request,) = spans.named(INGEST)
    assert request.status.status_code == StatusCode.ERROR
    assert request.status.description == "UNAVAILABLE: the store is unavailable; retry later"
    assert request.attributes is not None
    assert request.attributes["error.type"] == "UNAVAILABLE"
    (commit,) = spans.named("uptake.commit")
    (insert,) = spans.named("uptake.store.insert")
    for failed in (commit, insert):
        assert failed.status.status_code == StatusCode.ERROR
        assert failed.attributes is not None
        assert failed.attributes["error.type"] == "StoreUnavailable"
        assert failed.events == ()  # no exception event: its message may quote the store
    assert commit.links == ()  # nothing was stored by an insert
    assert_private(spans.all(), "ClickHouse is unreachable")
