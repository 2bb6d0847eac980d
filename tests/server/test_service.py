"""The ingestion service in-process: real gRPC on loopback, real embedded store."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import stored_events
from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.app import Service, create_server
from uptake_server.config import Settings, load_settings
from uptake_server.errors import StoreUnavailable
from uptake_server.ingest.servicer import IngestServicer
from uptake_server.ingest.validation import Limits
from uptake_server.metrics import ServiceMetrics
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.store.group_commit import GroupCommitter


def settings_for(data_dir: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "dev": True,
        "data_dir": str(data_dir),
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "127.0.0.1:0",
    }
    values.update(extra)
    return load_settings(values, environ={})


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(settings_for(tmp_path / "var", max_events_per_request=50))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def stub(service: Service) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    with grpc.insecure_channel(service.grpc_target) as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


def event(**changes: object) -> ingest_pb2.Event:
    fields: dict[str, object] = {
        "event_id": os.urandom(16),
        "occurred_at_ms": int(time.time() * 1000) - 1000,
        "tool": "wiki",
        "action": "page_edit",
        "user_id": "alice",
        "org_unit": "sales",
    }
    fields.update(changes)
    return ingest_pb2.Event(**fields)  # type: ignore[arg-type]


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_partial_success_stores_good_events_and_records_bad_ones(
    service: Service, stub: ingest_pb2_grpc.IngestServiceStub
) -> None:
    batch = [event(user_id="u1"), event(tool="Wiki"), event(user_id="u2"), event(action="")]
    reply = stub.Ingest(ingest_pb2.IngestRequest(batch_id="mixed", events=batch), timeout=30)
    assert (reply.accepted, reply.rejected) == (2, 2)
    assert [(r.index, r.field, r.code) for r in reply.rejections] == [
        (1, "tool", "invalid_slug"),
        (3, "action", "missing"),
    ]
    assert "got 'Wiki'" in reply.rejections[0].reason
    metrics = scrape(service.metrics_url)
    assert metrics["uptake_ingest_events_total{outcome=accepted}"] == 2
    assert metrics["uptake_ingest_events_total{outcome=rejected}"] == 2
    assert metrics["uptake_ingest_rejections_total{reason=invalid_slug}"] == 1
    assert metrics["uptake_ingest_requests_total{code=OK}"] == 1
    assert metrics["uptake_ingest_request_duration_seconds_count{}"] == 1
    assert metrics["uptake_store_insert_duration_seconds_count{}"] >= 1
    assert metrics["uptake_store_pending_events{}"] == 0
    assert metrics["uptake_store_up{}"] == 1
    data_dir = service.settings.data_path
    service.stop()
    stored = stored_events(data_dir)
    assert sorted(e["event_id"] for e in stored) == sorted(batch[i].event_id.hex() for i in (0, 2))
    failed = stored_events(data_dir, failed=True)
    assert sorted((f["event_index"], f["field"], f["code"], f["batch_id"]) for f in failed) == [
        (1, "tool", "invalid_slug", "mixed"),
        (3, "action", "missing", "mixed"),
    ]


def test_a_column_wise_request_is_stored_like_messages(tmp_path: Path) -> None:
    directory = tmp_path / "directory.csv"
    directory.write_text("user_id,org_unit\nalice,sales\n")
    svc = Service(settings_for(tmp_path / "var", org_unit_csv=str(directory)))
    svc.start()
    now = int(time.time() * 1000) - 1000
    ids = [os.urandom(16) for _ in range(3)]
    columns = ingest_pb2.Columns(
        event_id=ids,
        occurred_at_ms=[now] * 3,
        tool=["wiki", "Wiki", "chat"],
        action=["view", "view", "post"],
        user_id=["alice", "bob", "carol"],
        org_unit=["", "", "support"],  # alice's comes from the directory
        property_counts=[1, 0, 0],
        property_keys=["space"],
        property_values=["eng"],
    )
    try:
        with grpc.insecure_channel(svc.grpc_target) as channel:
            reply = ingest_pb2_grpc.IngestServiceStub(channel).Ingest(
                ingest_pb2.IngestRequest(batch_id="columns", columns=columns), timeout=30
            )
    finally:
        svc.stop()
    assert (reply.accepted, reply.rejected) == (2, 1)
    assert [(r.index, r.field, r.code) for r in reply.rejections] == [(1, "tool", "invalid_slug")]
    stored = {e["event_id"]: e for e in stored_events(svc.settings.data_path)}
    assert sorted(stored) == sorted(ids[i].hex() for i in (0, 2))
    alice, carol = stored[ids[0].hex()], stored[ids[2].hex()]
    assert (alice["tool"], alice["org_unit"], alice["occurred_at_ms"]) == ("wiki", "sales", now)
    assert (alice["property_keys"], alice["property_values"]) == (["space"], ["eng"])
    assert (carol["tool"], carol["action"], carol["org_unit"]) == ("chat", "post", "support")
    failed = stored_events(svc.settings.data_path, failed=True)
    assert [(f["event_index"], f["field"], f["batch_id"]) for f in failed] == [
        (1, "tool", "columns")
    ]


@pytest.mark.parametrize(
    ("request_", "field", "description"),
    [
        (
            ingest_pb2.IngestRequest(events=[event() for _ in range(51)]),
            "events",
            "51 events in one request; the limit is 50",
        ),
        (
            ingest_pb2.IngestRequest(
                columns=ingest_pb2.Columns(event_id=[b"a" * 16] * 2, tool=["wiki"])
            ),
            "columns.tool",
            "columns.tool has 1 entries for 2 events",
        ),
        (
            ingest_pb2.IngestRequest(columns=ingest_pb2.Columns(event_id=[b"a" * 16] * 51)),
            "columns",
            "51 events in one request; the limit is 50",
        ),
        (
            ingest_pb2.IngestRequest(
                events=[ingest_pb2.Event()], columns=ingest_pb2.Columns(tool=["wiki"])
            ),
            "columns",
            "carries events both in events and in columns",
        ),
    ],
)
def test_a_malformed_request_is_invalid_argument_naming_the_field(
    stub: ingest_pb2_grpc.IngestServiceStub,
    request_: ingest_pb2.IngestRequest,
    field: str,
    description: str,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Ingest(request_, timeout=30)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == field
    assert description in bad.field_violations[0].description


def test_the_same_batch_twice_is_stored_once(
    service: Service, stub: ingest_pb2_grpc.IngestServiceStub
) -> None:
    request = ingest_pb2.IngestRequest(batch_id="again", events=[event() for _ in range(20)])
    first = stub.Ingest(request, timeout=30)
    second = stub.Ingest(request, timeout=30)
    assert (first.accepted, second.accepted) == (20, 20)
    metrics = scrape(service.metrics_url)
    assert metrics["uptake_ingest_events_total{outcome=accepted}"] == 20
    assert metrics["uptake_ingest_events_total{outcome=duplicate}"] == 20
    data_dir = service.settings.data_path
    service.stop()
    assert len(stored_events(data_dir)) == 20


def test_oversize_message_is_resource_exhausted(tmp_path: Path) -> None:
    svc = Service(settings_for(tmp_path / "var", max_message_bytes=64 * 1024))
    svc.start()
    try:
        with grpc.insecure_channel(svc.grpc_target) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            big = [event(user_id="u" * 200) for _ in range(400)]
            with pytest.raises(grpc.RpcError) as info:
                stub.Ingest(ingest_pb2.IngestRequest(events=big), timeout=30)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    finally:
        svc.stop()


def test_health_and_reflection(service: Service) -> None:
    with grpc.insecure_channel(service.grpc_target) as channel:
        health_stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "uptake.v1.IngestService"):
            reply = health_stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"uptake.v1.IngestService", "grpc.health.v1.Health"} <= names


class DownStore:
    """A store that is unreachable: what an outage looks like to the committer."""

    def insert(
        self, events: EventColumns, failed: FailedColumns, *, lookup: list[bytes] | None = None
    ) -> set[bytes]:
        raise StoreUnavailable("ClickHouse is unreachable", retry_after_seconds=2.5)


def test_store_outage_is_unavailable_with_retry_info(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "var")
    metrics = ServiceMetrics(registry=CollectorRegistry())
    committer = GroupCommitter(
        DownStore(), max_rows=100, max_delay_seconds=0, max_pending=1000, metrics=metrics
    )
    servicer = IngestServicer(
        committer=committer,
        pseudonymise=lambda u: u.encode().ljust(16, b"_")[:16],
        limits=Limits(),
        max_events_per_request=100,
        metrics=metrics,
    )
    server, port = create_server(
        settings, servicer=servicer, health_servicer=health.HealthServicer()
    )
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Ingest(ingest_pb2.IngestRequest(events=[event()]), timeout=30)
    finally:
        server.stop(None).wait()
        committer.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    # The cause (hosts, users) stays in the server log.
    assert info.value.details() == "the store is unavailable; retry later"  # type: ignore[attr-defined]
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 2500
    assert metrics.requests.labels(code="UNAVAILABLE")._value.get() == 1
