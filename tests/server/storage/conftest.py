"""Storage test fixtures: the same suite on every transport.

Without UPTAKE_TEST_CLICKHOUSE_URL each store test runs twice: on the embedded
engine through clickhouse-connect's chDB interface, and over HTTP to the loopback
fixture in tests/support/clickhouse_http.py (chDB behind ClickHouse's HTTP
interface). With it (`make test-clickhouse`), they run against that server, each
test in a database of its own that is dropped afterwards.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.clickhouse_http import ClickHouseHTTP
from uptake_server.store import ClickHouseStore, SchemaContext, StoreOptions
from uptake_server.store.dsn import parse_dsn

SERVER_URL = os.environ.get("UPTAKE_TEST_CLICKHOUSE_URL", "").rstrip("/")
TRANSPORTS = ["server"] if SERVER_URL else ["chdb", "http"]

OpenStore = Callable[..., ClickHouseStore]


@pytest.fixture(scope="session")
def clickhouse_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTP]:
    """Serve ClickHouse's HTTP interface from chDB in a child process, for the whole session."""
    fixture = ClickHouseHTTP(tmp_path_factory.mktemp("clickhouse-http") / "data")
    yield fixture
    fixture.stop()


@pytest.fixture
def http_fault(clickhouse_http: ClickHouseHTTP) -> Iterator[ClickHouseHTTP]:
    """Give a test the fixture to inject faults into; clear them afterwards."""
    yield clickhouse_http
    clickhouse_http.fault(None)


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """Undo the logging set-up of an in-process `uptake-server` run (it targets captured stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _database() -> str:
    return f"uptake_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=TRANSPORTS)
def store_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Return a DSN of an empty store on one transport; drop its database afterwards."""
    if request.param == "chdb":
        yield f"chdb://{tmp_path / 'store'}"
        return
    if request.param == "http":
        base = request.getfixturevalue("clickhouse_http").url.replace("://", "://default@")
    else:
        base = SERVER_URL
    dsn = f"{base}/{_database()}"
    yield dsn
    target, password = parse_dsn(dsn)
    cleanup = ClickHouseStore(target, options=StoreOptions(password=password))
    try:
        cleanup.client("admin").command(f"DROP DATABASE IF EXISTS `{target.database}` SYNC")
    finally:
        cleanup.close()


@pytest.fixture
def open_store(store_dsn: str) -> Iterator[OpenStore]:
    """Return a function that opens stores on the test's DSN; close them all afterwards."""
    opened: list[ClickHouseStore] = []

    def open_(**options: object) -> ClickHouseStore:
        target, password = parse_dsn(store_dsn)
        store = ClickHouseStore(target, options=StoreOptions(password=password, **options))  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def context_for(store: ClickHouseStore, **values: object) -> SchemaContext:
    """Return the schema context of a store's database."""
    return SchemaContext(database=store.target.database, **values)  # type: ignore[arg-type]


@pytest.fixture
def store(open_store: OpenStore) -> ClickHouseStore:
    """Return a migrated store on the test's transport."""
    opened = open_store()
    opened.migrate(context_for(opened))
    return opened
