"""The store on every transport: migrations, round trips, deduplication, retention, erasure."""

from __future__ import annotations

import gc
import os
import threading

import pytest

from tests.server.storage.conftest import OpenStore, context_for
from tests.server.storage.rows import NOW_MS, events_of, failed_of
from uptake_server.model import EVENT_COLUMNS, FailedColumns
from uptake_server.store import ClickHouseStore
from uptake_server.store.clickhouse import event_token
from uptake_server.store.erasure import purge_user
from uptake_server.store.schema import MIGRATIONS

ALICE = b"\xa1" * 15 + b"\x00"  # a trailing zero byte: FixedString comparisons must keep it
BOB = b"\xb0" * 16


def count(store: ClickHouseStore, table: str, where: str = "1") -> int:
    return int(store.query(f"SELECT count() FROM {table} WHERE {where}")[0][0])


def tables(store: ClickHouseStore) -> dict[str, str]:
    rows = store.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
    )
    return dict(rows)


def test_migrations_are_recorded_once_and_rerun_as_no_ops(store: ClickHouseStore) -> None:
    versions = store.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert versions == [(m.version, m.name) for m in MIGRATIONS]
    assert store.migrate(context_for(store)) == []
    names = set(tables(store))
    assert {"events", "failed_events", "event_ids"} <= names
    views = {"event_ids_mv", "kpi_user_hours_mv", "kpi_user_days_mv", "kpi_first_seen_mv"}
    if store.target.engine == "chdb":
        # The embedded store rolls up instead of views (store/rollup.py).
        assert "kpi_rollup" in names and not views & names
    else:
        assert views <= names and "kpi_rollup" not in names


def test_replicas_starting_at_once_converge(open_store: OpenStore) -> None:
    first = open_store()
    # One process per embedded directory (a second is refused): there, two threads.
    stores = [first, first if first.target.engine == "chdb" else open_store()]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def run(store: ClickHouseStore) -> None:
        start.wait()
        try:
            store.migrate(context_for(store))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = stores[0]
    versions = check.query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
    assert versions == [(m.version,) for m in MIGRATIONS]
    assert check.migrate(context_for(check)) == []
    check.insert(events_of(ALICE, 3), FailedColumns())
    check.roll_up()  # the embedded store's filter is rolled up; a server's view is at once
    assert count(check, "events") == count(check, "event_ids") == 3


def test_every_column_round_trips(store: ClickHouseStore) -> None:
    events = events_of(ALICE, 2)
    store.insert(events, failed_of(ALICE, 1))
    rows = store.query(
        "SELECT event_id, toUnixTimestamp64Milli(occurred_at), toUnixTimestamp64Milli(received_at),"
        " tool, action, user_id, org_unit, feature, client, property_keys, property_values"
        " FROM events ORDER BY occurred_at DESC"
    )
    assert rows == [tuple(column[i] for column in events.columns()) for i in range(2)]
    assert store.query("SELECT batch_id, event_index, code FROM failed_events") == [
        ("b1", 0, "invalid_slug")
    ]


def test_ids_stored_before_or_repeated_in_a_batch_are_stored_once(store: ClickHouseStore) -> None:
    ids = [os.urandom(15) + b"\x00" for _ in range(50)]
    assert store.insert(events_of(ALICE, 50, ids=ids), FailedColumns()) == set()
    assert store.insert(events_of(ALICE, 50, ids=ids), FailedColumns()) == set(ids)
    repeated = [b"r" * 16, b"r" * 16, b"s" * 16]
    assert store.insert(events_of(BOB, 3, ids=repeated), FailedColumns()) == set()
    assert count(store, "events") == 52


def test_an_insert_leaves_nothing_for_the_garbage_collector(store: ClickHouseStore) -> None:
    # A server inserts all day: rows held by a reference cycle would wait for a
    # collection (clickhouse-connect's insert context refers to itself).
    events, failed = events_of(ALICE, 200), failed_of(ALICE, 2)
    gc.collect()
    gc.disable()
    try:
        store.insert(events, failed)
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert count(store, "events") == 200


def test_a_retried_block_is_dropped_by_its_token(store: ClickHouseStore) -> None:
    # What the token is for: the first attempt committed but its answer was lost,
    # so the same events arrive again past the pre-insert lookup. Their order and
    # receive time differ; the token, a hash of the sorted ids, does not.
    first = events_of(ALICE, 20)
    again = first.select(list(reversed(range(20))))
    again.received_at[:] = [NOW_MS + 5_000] * 20
    assert event_token(first.event_id) == event_token(again.event_id)
    for block in (first, again):
        store.insert_columns(
            "events",
            block.columns(),
            names=[name for name, _ in EVENT_COLUMNS],
            types=[kind for _, kind in EVENT_COLUMNS],
            token=event_token(block.event_id),
        )
    assert count(store, "events") == 20
    other = events_of(ALICE, 1)
    store.insert(other, FailedColumns())
    assert count(store, "events") == 21


def test_changed_retention_alters_existing_tables(open_store: OpenStore) -> None:
    store = open_store()
    store.migrate(context_for(store, retention_days=100, aggregate_retention_days=400))
    assert "toIntervalDay(100)" in tables(store)["events"]
    changes = store.migrate(
        context_for(
            store, retention_days=200, failed_retention_days=7, aggregate_retention_days=800
        )
    )
    assert changes == [
        "retention of events: 100 -> 200 days",
        "retention of failed_events: 30 -> 7 days",
        "retention of kpi_user_hours: 400 -> 800 days",
        "retention of kpi_user_days: 400 -> 800 days",
    ]
    engines = tables(store)
    assert "TTL toDateTime(occurred_at) + toIntervalDay(200)" in engines["events"]
    assert "TTL toDateTime(received_at) + toIntervalDay(7)" in engines["failed_events"]
    assert "TTL hour + toIntervalDay(800)" in engines["kpi_user_hours"]
    assert "non_replicated_deduplication_window = 1000" in engines["events"]


def test_async_inserts_are_acknowledged_once_written(open_store: OpenStore) -> None:
    store = open_store(async_insert=True)
    store.migrate(context_for(store))
    store.insert(events_of(ALICE, 5), failed_of(ALICE, 1))
    assert (count(store, "events"), count(store, "failed_events")) == (5, 1)


def test_purge_removes_one_user_everywhere_and_reports_it(store: ClickHouseStore) -> None:
    store.insert(events_of(ALICE, 6), failed_of(ALICE, 2))
    store.insert(events_of(BOB, 4, tool="chat"), failed_of(BOB, 1, batch_id="b2"))
    report = purge_user(store, ALICE, context_for(store))
    assert report.pseudonym == ALICE.hex()
    assert report.removed["events"] == 6
    assert report.removed["failed_events"] == 2
    assert report.removed["kpi_user_days"] >= 1
    assert set(report.removed) >= {"kpi_user_hours", "kpi_first_seen"}
    alice = f"user_id = toFixedString(unhex('{ALICE.hex()}'), 16)"
    for table in report.removed:
        if table != "failed_events":
            assert count(store, table, alice) == 0, table
    assert count(store, "failed_events", f"payload LIKE '%{ALICE.hex()}%'") == 0
    assert count(store, "events") == 4
    assert count(store, "failed_events") == 1
    assert count(store, "event_ids") == 10  # ids only: a late retry stays a duplicate
    assert purge_user(store, ALICE, context_for(store)).total == 0


def test_store_answers_the_health_probe(store: ClickHouseStore) -> None:
    assert store.ping()
    assert "password" not in store.describe()


def test_embedded_inserts_run_on_one_thread(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The HTTP store sends no thread settings: test_wire checks that.
    from clickhouse_connect.driver._backend import chdb_backend

    statements: list[str] = []
    run = chdb_backend.ChdbBackend._run

    def record(self: object, sql: str, *args: object, **kwargs: object) -> object:
        statements.append(sql.replace(" ", ""))
        return run(self, sql, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(chdb_backend.ChdbBackend, "_run", record)
    store = open_store()
    store.migrate(context_for(store))
    store.insert(events_of(ALICE, 3), failed_of(ALICE, 1))
    inserts = [sql for sql in statements if "FROMINFILE" in sql]
    if store.target.engine != "chdb":
        assert inserts == []
        return
    assert [sql.split("`")[1] for sql in inserts[-2:]] == ["events", "failed_events"]
    for sql in inserts:
        assert "max_threads='1'" in sql
        assert "input_format_parallel_parsing='0'" in sql
    assert count(store, "events") == 3
