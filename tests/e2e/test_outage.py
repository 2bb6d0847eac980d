"""A store outage while clients stream: nothing acknowledged is lost, everyone recovers alone.

The store is ClickHouse's HTTP interface served from chDB (tests/support/clickhouse_http.py),
which can answer 503 or drop connections on demand.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.e2e.acknowledged import Ledger, Producers
from tests.support.clickhouse_http import ClickHouseHTTP
from tests.support.servers import ServerProcess, health_status
from uptake_server.config import load_settings
from uptake_server.inspection import fetch_events

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def clickhouse(tmp_path: Path) -> Iterator[ClickHouseHTTP]:
    fixture = ClickHouseHTTP(tmp_path / "clickhouse")
    yield fixture
    fixture.stop()


def readiness(server: ServerProcess) -> int | None:
    return health_status(server.target, service="uptake.v1.IngestService", timeout=1.0)


def wait_readiness(server: ServerProcess, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while readiness(server) != status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"readiness did not become {status} in {timeout} s")
        time.sleep(0.1)


def test_store_outage_loses_nothing_acknowledged_and_clients_recover(
    clickhouse: ClickHouseHTTP, tmp_path: Path
) -> None:
    dsn = clickhouse.url.replace("://", "://default@") + "/uptake"
    ledger = Ledger()
    with ServerProcess(tmp_path / "var", extra_args=["--store-dsn", dsn]) as server:
        producers = Producers(server.target, ledger, clients=2, api_key=None, events_per_second=300)
        producers.start()
        try:
            ledger.wait_for(500)
            clickhouse.fault("503")  # every statement, inserts and probes alike
            wait_readiness(server, NOT_SERVING)
            down = ledger.count()
            time.sleep(1.5)
            assert ledger.count() == down, "events were acknowledged while the store was down"
            clickhouse.fault(None)
            wait_readiness(server, SERVING)
            ledger.wait_for(down + 500)
            # The "did it commit?" case: inserts run, then the answer never arrives.
            clickhouse.fault("drop_after", times=3, match="INSERT INTO `events`")
            ledger.wait_for(ledger.count() + 500)
            tokens = Counter(
                r["params"].get("insert_deduplication_token")
                for r in clickhouse.requests()
                if r["head"].startswith("INSERT INTO `events`")
            )
            assert max(tokens.values()) >= 2, "no insert was sent again after a lost answer"
        finally:
            stats = producers.finish()
        assert server.stop() == 0
    assert ledger.failures["UNAVAILABLE"] > 0
    settings = load_settings({"data_dir": str(tmp_path / "var"), "store_dsn": dsn}, environ={})
    stored = Counter(row["event_id"] for row in fetch_events(settings, limit=10**9))
    acknowledged = {i.hex() for i in ledger.acknowledged}
    assert not [i for i in acknowledged if stored[i] != 1], "acknowledged, not stored once"
    assert max(stored.values()) == 1, "an event is stored twice"
    tracked = sum(producers.tracked)
    assert sum(s.delivered for s in stats) == tracked
    assert len(stored) == tracked
