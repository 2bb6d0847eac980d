"""The optional prometheus_client collector, and that it stays optional."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

import uptake
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse, Rejection

MakeClient = Callable[..., uptake.Client]


def test_the_collector_exports_events_by_outcome(make_client: MakeClient) -> None:
    def reject_first(request: IngestRequest) -> IngestResponse:
        return IngestResponse(
            accepted=len(request.columns.event_id) - 1,
            rejected=1,
            rejections=[Rejection(index=0, field="tool", reason="unknown", code="unknown")],
        )

    client = make_client(transport=uptake.InMemoryTransport(respond=reject_first), strict=False)
    for i in range(4):
        client.track(f"u{i}", "view", tool="wiki")
    client.track("", "view", tool="wiki")  # invalid, counted
    client.flush(5)
    registry = CollectorRegistry()
    registry.register(uptake.MetricsCollector(client))
    text = generate_latest(registry).decode()
    assert 'uptake_sdk_events_total{outcome="delivered"} 3.0' in text
    assert 'uptake_sdk_events_total{outcome="rejected"} 1.0' in text
    assert 'uptake_sdk_events_total{outcome="invalid"} 1.0' in text
    assert 'uptake_sdk_events_total{outcome="queue_full"} 0.0' in text
    assert text.count("uptake_sdk_events_total{") == len(uptake.OUTCOMES)


def test_importing_the_sdk_does_not_import_prometheus_client() -> None:
    code = "import sys, uptake; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_a_failing_on_error_callback_never_stops_delivery(make_client: MakeClient) -> None:
    def explode(failure: uptake.Failure) -> None:
        raise RuntimeError("callback bug")

    def reject_all(request: IngestRequest) -> IngestResponse:
        return IngestResponse(
            rejections=[Rejection(index=i, code="x") for i in range(len(request.columns.event_id))]
        )

    transport = uptake.InMemoryTransport(respond=reject_all)
    client = make_client(transport=transport, on_error=explode)
    client.track("u", "view", tool="wiki")
    client.flush(5)
    client.track("u", "view", tool="wiki")
    client.flush(5)
    assert client.stats().rejected == 2
    assert len(transport.requests) == 2


def test_the_in_memory_transport_is_a_transport() -> None:
    assert isinstance(uptake.InMemoryTransport(), uptake.Transport)
