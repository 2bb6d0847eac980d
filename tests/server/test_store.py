"""The store and group commit on the real embedded engine (chDB)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from uptake_server.errors import StoreLocked, StoreOverloaded
from uptake_server.metrics import ServiceMetrics
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.store import ClickHouseStore, SchemaContext
from uptake_server.store.dsn import parse_dsn
from uptake_server.store.group_commit import GroupCommitter
from uptake_server.store.schema import MIGRATIONS

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    target, _ = parse_dsn(f"chdb://{tmp_path / 'store'}")
    opened = ClickHouseStore(target)
    opened.migrate(SchemaContext())
    yield opened
    opened.close()


def make_events(n: int, *, ids: list[bytes] | None = None, tool: str = "wiki") -> EventColumns:
    ids = ids or [os.urandom(16) for _ in range(n)]
    cols = EventColumns()
    for i, event_id in enumerate(ids):
        cols.event_id.append(event_id)
        cols.occurred_at.append(NOW_MS - i)
        cols.received_at.append(NOW_MS)
        cols.tool.append(tool)
        cols.action.append("view")
        cols.user_id.append(i.to_bytes(16, "big"))
        cols.org_unit.append("sales")
        cols.feature.append("")
        cols.client.append("test")
        cols.property_keys.append(["k"])
        cols.property_values.append([str(i)])
    return cols


def count(store: ClickHouseStore, table: str = "events") -> int:
    return int(store.query(f"SELECT count() FROM {table}")[0][0])


def test_migrations_are_recorded_and_idempotent(store: ClickHouseStore) -> None:
    assert store.migrate(SchemaContext()) == []
    versions = store.query("SELECT version FROM schema_migrations FINAL ORDER BY version")
    assert versions == [(m.version,) for m in MIGRATIONS]
    tables = {
        r[0] for r in store.query("SELECT name FROM system.tables WHERE database = 'default'")
    }
    assert {"events", "failed_events", "event_ids", "kpi_rollup"} <= tables
    assert not {name for name in tables if name.endswith("_mv")}  # rolled up instead


def test_timestamps_round_trip_to_the_millisecond(store: ClickHouseStore) -> None:
    events = make_events(1)
    store.insert(events, FailedColumns())
    (stored_ms,) = store.query("SELECT toUnixTimestamp64Milli(occurred_at) FROM events")[0]
    assert stored_ms == events.occurred_at[0]
    (year,) = store.query("SELECT toYear(occurred_at) FROM events")[0]
    assert year == time.gmtime(NOW_MS / 1000).tm_year


def test_retried_ids_are_not_stored_twice(store: ClickHouseStore) -> None:
    # An id ending in zero bytes: FixedString vs String comparison would miss it.
    ids = [os.urandom(15) + b"\x00", b"\x01" + bytes(15)] + [os.urandom(16) for _ in range(98)]
    first = make_events(100, ids=ids)
    assert store.insert(first, FailedColumns()) == set()
    again = make_events(100, ids=ids)
    assert store.insert(again, FailedColumns()) == set(ids)
    assert count(store) == 100
    # Repeats within one insert are stored once.
    repeated = make_events(4, ids=[b"r" * 16, b"r" * 16, b"s" * 16, b"r" * 16])
    assert store.insert(repeated, FailedColumns()) == set()
    assert count(store) == 102


def test_second_open_of_the_same_directory_names_it(tmp_path: Path) -> None:
    path = tmp_path / "store"
    target, _ = parse_dsn(f"chdb://{path}")
    first = ClickHouseStore(target)
    try:
        code = (
            "from uptake_server.store import ClickHouseStore\n"
            "from uptake_server.store.dsn import parse_dsn\n"
            f"ClickHouseStore(parse_dsn('chdb://{path}')[0])\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0
        assert f"the data directory {path} is in use by another Uptake process" in result.stderr
        assert f"pid {os.getpid()}" in result.stderr
        assert StoreLocked.__name__ in result.stderr
    finally:
        first.close()
    second = ClickHouseStore(target)
    second.close()


class SlowStore:
    """Wraps the real store, counting inserts and slowing them to force grouping."""

    def __init__(self, inner: ClickHouseStore, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.inserts = 0
        self.lookups: list[list[bytes] | None] = []

    def insert(
        self, events: EventColumns, failed: FailedColumns, *, lookup: list[bytes] | None = None
    ) -> set[bytes]:
        self.inserts += 1
        self.lookups.append(lookup)
        time.sleep(self.delay)
        return self.inner.insert(events, failed, lookup=lookup)


class GatedStore:
    """Wraps the real store; the first insert is held until `release` is set."""

    def __init__(self, inner: ClickHouseStore) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.held = threading.Event()  # the first insert has started
        self.inserted: list[int] = []  # sizes of the inserts begun after the first
        self._first = True

    def insert(
        self, events: EventColumns, failed: FailedColumns, *, lookup: list[bytes] | None = None
    ) -> set[bytes]:
        if self._first:
            self._first = False
            self.held.set()
            assert self.release.wait(30), "the held insert was never released"
        else:
            self.inserted.append(len(events))
        return self.inner.insert(events, failed, lookup=lookup)


def committer_for(
    store: SlowStore | GatedStore,
    *,
    max_rows: int,
    max_delay: float,
    max_pending: int,
    writers: int = 1,
) -> GroupCommitter:
    return GroupCommitter(
        store,
        max_rows=max_rows,
        max_delay_seconds=max_delay,
        max_pending=max_pending,
        writers=writers,
        metrics=ServiceMetrics(registry=CollectorRegistry()),
    )


def test_group_commit_shares_inserts_and_reports_each_request(store: ClickHouseStore) -> None:
    slow = SlowStore(store, 0.05)
    committer = committer_for(slow, max_rows=100_000, max_delay=0.01, max_pending=1_000_000)
    shared = os.urandom(16)
    results = []
    lock = threading.Lock()

    def send() -> None:
        events = make_events(10)
        events.event_id[0] = shared  # every request repeats one id
        result = committer.submit(events, FailedColumns()).result(timeout=30)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.close()
    assert len(results) == 40
    assert slow.inserts < 40  # requests shared inserts
    assert sum(r.stored for r in results) == 40 * 9 + 1
    assert sum(r.duplicates for r in results) == 39
    assert count(store) == 40 * 9 + 1


def test_group_commit_refuses_beyond_the_pending_bound(store: ClickHouseStore) -> None:
    committer = committer_for(SlowStore(store, 0.5), max_rows=10, max_delay=0.0, max_pending=150)
    try:
        first = committer.submit(make_events(100), FailedColumns())
        with pytest.raises(StoreOverloaded, match="100 events are waiting for the store"):
            committer.submit(make_events(100), FailedColumns())
        assert first.result(timeout=30).stored == 100
    finally:
        committer.close()


def test_failed_events_are_stored(store: ClickHouseStore) -> None:
    failed = FailedColumns()
    failed.received_at.append(NOW_MS)
    failed.batch_id.append("b1")
    failed.event_index.append(3)
    failed.field.append("tool")
    failed.code.append("invalid_slug")
    failed.reason.append("tool must be a lowercase slug")
    failed.client.append("c")
    failed.payload.append("{}")
    store.insert(EventColumns(), failed)
    assert store.query("SELECT batch_id, event_index, code FROM failed_events") == [
        ("b1", 3, "invalid_slug")
    ]


CRASHING_WRITER = """
import os, sys, time
from tests.server.test_store import make_events
from uptake_server.model import FailedColumns
from uptake_server.store import ClickHouseStore, SchemaContext
from uptake_server.store.dsn import parse_dsn

store = ClickHouseStore(parse_dsn(sys.argv[1])[0])
store.migrate(SchemaContext())
store.insert(make_events(30), FailedColumns())
store.roll_up()
kept = [bytes([1, i]) * 8 for i in range(50)]
store.insert(make_events(50, ids=kept), FailedColumns())
print("ready", flush=True)  # committed, not rolled up: then killed
time.sleep(600)
"""


def test_after_a_crash_the_next_start_rolls_up_what_was_committed(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    writer = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, dsn], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
    finally:
        writer.kill()
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    store = ClickHouseStore(parse_dsn(dsn)[0])
    try:
        assert store.unclean_shutdown
        kept = [bytes([1, i]) * 8 for i in range(50)]
        assert count(store, "event_ids") == 30  # the killed process never rolled them up,
        assert store.existing_ids(kept) == set(kept)  # yet a resend is caught already.
        assert store.recover() == 50
        assert count(store, "event_ids") == count(store) == 80
        # Users 0-29 were in both inserts, users 30-49 only in the unrolled one.
        assert count(store, "kpi_first_seen FINAL") == 50
        assert store.insert(make_events(50, ids=kept), FailedColumns()) == set(kept)
        assert count(store) == 80
    finally:
        store.close()
    reopened = ClickHouseStore(parse_dsn(dsn)[0])
    try:
        assert not reopened.unclean_shutdown
        assert reopened.recover() == 0
    finally:
        reopened.close()


def test_first_sends_skip_the_lookup_and_resends_are_still_caught(store: ClickHouseStore) -> None:
    slow = SlowStore(store, 0.0)
    committer = committer_for(slow, max_rows=100_000, max_delay=0.0, max_pending=1_000_000)
    try:
        first = make_events(10)
        assert committer.submit(first, FailedColumns(), first_send=True).result(30).stored == 10
        assert slow.lookups == [[]]  # nothing looked up for a first send
        resent = make_events(10, ids=first.event_id)
        result = committer.submit(resent, FailedColumns()).result(30)
        assert (result.stored, result.duplicates) == (0, 10)
        assert slow.lookups[-1] is None  # a possible resend: every id looked up
    finally:
        committer.close()
    assert count(store) == 10


def test_with_two_writers_a_first_send_is_stored_while_the_insert_before_it_runs(
    store: ClickHouseStore,
) -> None:
    gated = GatedStore(store)
    committer = committer_for(gated, max_rows=100_000, max_delay=0.0, max_pending=10**6, writers=2)
    try:
        held = committer.submit(make_events(10), FailedColumns(), first_send=True)
        assert gated.held.wait(30)
        second = committer.submit(make_events(5), FailedColumns(), first_send=True)
        assert second.result(timeout=30).stored == 5  # never waited for the held insert
        assert not held.done() and count(store) == 5
        gated.release.set()
        assert held.result(timeout=30).stored == 10
    finally:
        gated.release.set()
        committer.close()
    assert count(store) == 15


def test_a_resend_waits_for_the_running_inserts_and_is_caught(store: ClickHouseStore) -> None:
    # The client gave up on the first send while it was being inserted, and resent:
    # inserted beside it, the resend would find nothing and store every event twice.
    gated = GatedStore(store)
    committer = committer_for(gated, max_rows=100_000, max_delay=0.0, max_pending=10**6, writers=2)
    try:
        first = make_events(10)
        held = committer.submit(first, FailedColumns(), first_send=True)
        assert gated.held.wait(30)
        resent = committer.submit(make_events(10, ids=first.event_id), FailedColumns())
        time.sleep(0.3)  # time enough for the idle writer to insert it, were it allowed
        assert gated.inserted == [] and not resent.done()
        gated.release.set()
        assert held.result(timeout=30).stored == 10
        result = resent.result(timeout=30)
        assert (result.stored, result.duplicates) == (0, 10)
    finally:
        gated.release.set()
        committer.close()
    assert count(store) == 10


def test_a_group_committer_needs_a_writer() -> None:
    with pytest.raises(ValueError, match="writers must be at least 1, not 0"):
        committer_for(SlowStore(None, 0), max_rows=1, max_delay=0, max_pending=1, writers=0)  # type: ignore[arg-type]
