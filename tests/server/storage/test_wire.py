"""What the store sends over HTTP, as the fixture records it: clickhouse-connect used well."""

from __future__ import annotations

from tests.server.storage.conftest import context_for
from tests.server.storage.rows import events_of, failed_of
from tests.support.clickhouse_http import ClickHouseHTTP
from uptake_server.store import ClickHouseStore, StoreOptions
from uptake_server.store.clickhouse import event_token
from uptake_server.store.dsn import parse_dsn

USER = b"\x07" * 16


def test_inserts_are_typed_compressed_tokened_and_sessionless(
    clickhouse_http: ClickHouseHTTP,
) -> None:
    dsn = f"{clickhouse_http.url.replace('://', '://default@')}/uptake_wire"
    store = ClickHouseStore(parse_dsn(dsn)[0], options=StoreOptions(async_insert=True))
    try:
        store.migrate(context_for(store))
        store.query("SELECT 1")
        mark = clickhouse_http.mark()
        events = events_of(USER, 4)
        store.insert(events, failed_of(USER, 1))
        assert store.query("SELECT count() FROM events") == [(4,)]
        sent = clickhouse_http.requests(since=mark)
    finally:
        store.command("DROP DATABASE IF EXISTS uptake_wire SYNC")
        store.close()
    assert not [r for r in sent if "session_id" in r["params"]]
    assert not [r for r in sent if r["head"].lstrip().upper().startswith("DESCRIBE")]
    inserts = [r for r in sent if r["head"].startswith("INSERT INTO")]
    assert [r["head"].split()[2] for r in inserts] == ["`events`", "`failed_events`"]
    for r in inserts:
        assert r["headers"]["Content-Encoding"] in ("lz4", "zstd")
        assert r["params"]["async_insert"] == r["params"]["wait_for_async_insert"] == "1"
        assert "max_threads" not in r["params"]  # a server plans its own inserts
        assert r["headers"]["User-Agent"].startswith("uptake-server/")
        assert "(writer)" in r["headers"]["User-Agent"]
    assert inserts[0]["params"]["insert_deduplication_token"] == event_token(events.event_id)
    reads = [r for r in sent if r["head"].startswith("SELECT count() FROM events")]
    assert reads[0]["params"]["enable_http_compression"] == "1"
    assert "lz4" in reads[0]["headers"]["Accept-Encoding"]
    assert "(reader)" in reads[0]["headers"]["User-Agent"]
