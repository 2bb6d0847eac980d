"""Store outages via the HTTP fixture: retried when safe, UNAVAILABLE while down, then healed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from tests.server.storage.conftest import context_for
from tests.server.storage.rows import events_of
from tests.support.clickhouse_http import ClickHouseHTTP
from tests.support.polling import wait_for
from tests.support.servers import health_status
from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.app import INGEST_SERVICE, Service
from uptake_server.config import load_settings
from uptake_server.errors import StoreUnavailable
from uptake_server.model import FailedColumns
from uptake_server.store import ClickHouseStore, StoreOptions
from uptake_server.store.dsn import parse_dsn

USER = b"\x42" * 16
INSERT_EVENTS = "INSERT INTO `events`"


@pytest.fixture
def http_dsn(http_fault: ClickHouseHTTP) -> Iterator[str]:
    """Return a DSN of a fresh database on the HTTP fixture; drop it afterwards."""
    dsn = f"{http_fault.url.replace('://', '://default@')}/uptake_faults_{os.urandom(6).hex()}"
    yield dsn
    http_fault.fault(None)
    cleanup = ClickHouseStore(parse_dsn(dsn)[0])
    try:
        cleanup.command(f"DROP DATABASE IF EXISTS `{cleanup.target.database}` SYNC")
    finally:
        cleanup.close()


@pytest.fixture
def http_store(http_dsn: str) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(parse_dsn(http_dsn)[0], options=StoreOptions(query_timeout_seconds=1))
    store.migrate(context_for(store))
    yield store
    store.close()


def inserts_sent(fixture: ClickHouseHTTP, since: int) -> list[dict[str, Any]]:
    return [r for r in fixture.requests(since=since) if r["head"].startswith(INSERT_EVENTS)]


def count_events(store: ClickHouseStore) -> int:
    return int(store.query("SELECT count() FROM events")[0][0])


def test_an_answer_lost_after_commit_is_deduplicated_on_replay(
    http_fault: ClickHouseHTTP, http_store: ClickHouseStore
) -> None:
    # The server commits, then the connection drops before the answer: the
    # client replays the insert, and the token makes the replay a no-op.
    mark = http_fault.mark()
    http_fault.fault("drop_after", times=1, match=INSERT_EVENTS)
    http_store.insert(events_of(USER, 10), FailedColumns())
    sent = inserts_sent(http_fault, mark)
    assert len(sent) == 2
    tokens = {r["params"]["insert_deduplication_token"] for r in sent}
    assert len(tokens) == 1
    assert count_events(http_store) == 10


def test_transient_failures_are_retried_a_bounded_number_of_times(
    http_fault: ClickHouseHTTP, http_store: ClickHouseStore
) -> None:
    http_fault.fault("503", times=1, match=INSERT_EVENTS)
    http_store.insert(events_of(USER, 3), FailedColumns())
    assert count_events(http_store) == 3
    mark = http_fault.mark()
    http_fault.fault("503", match=INSERT_EVENTS)
    with pytest.raises(StoreUnavailable, match="503"):
        http_store.insert(events_of(USER, 3), FailedColumns())
    assert len(inserts_sent(http_fault, mark)) == http_store.options.insert_attempts
    http_fault.fault(None)
    http_store.insert(events_of(USER, 3), FailedColumns())
    assert count_events(http_store) == 6


def test_a_stalled_server_times_out_and_is_reported_down(
    http_fault: ClickHouseHTTP, http_store: ClickHouseStore
) -> None:
    http_fault.fault("stall")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="timed out"):
        http_store.insert(events_of(USER, 3), FailedColumns())
    assert not http_store.ping()
    assert time.monotonic() - started < 10
    http_fault.fault(None)
    assert http_store.ping()


@pytest.mark.parametrize("mode", ["503", "drop", "stall"])
def test_an_outage_is_unavailable_with_retry_info_and_heals_without_restart(
    mode: str, http_fault: ClickHouseHTTP, http_dsn: str, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "dev": True,
            "data_dir": str(tmp_path / "var"),
            "store_dsn": http_dsn,
            "grpc_listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
            "health_interval_seconds": 0.2,
            "store_query_timeout_seconds": 1,
        },
        environ={},
    )
    service = Service(settings)
    service.start()
    try:
        with grpc.insecure_channel(service.grpc_target) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            request = ingest_pb2.IngestRequest(
                batch_id="outage",
                events=[
                    ingest_pb2.Event(
                        event_id=os.urandom(16),
                        occurred_at_ms=int(time.time() * 1000) - 1000,
                        tool="wiki",
                        action="page_edit",
                        user_id="alice",
                        org_unit="sales",
                    )
                ],
            )
            http_fault.fault(mode)
            with pytest.raises(grpc.RpcError) as info:
                stub.Ingest(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
            assert status is not None
            retry = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(retry)
            assert retry.retry_delay.ToMilliseconds() > 0
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            wait_for(
                lambda: health_status(service.grpc_target, service=INGEST_SERVICE) == not_serving,
                timeout=10,
                what="NOT_SERVING",
            )
            assert service.metrics.store_up._value.get() == 0

            http_fault.fault(None)
            serving = health_pb2.HealthCheckResponse.SERVING
            wait_for(
                lambda: health_status(service.grpc_target, service=INGEST_SERVICE) == serving,
                timeout=10,
                what="SERVING",
            )
            reply = stub.Ingest(request, timeout=30)
            assert reply.accepted == 1
            assert service.metrics.store_up._value.get() == 1
        assert int(service.store.query("SELECT count() FROM events")[0][0]) == 1
    finally:
        http_fault.fault(None)
        service.stop()
