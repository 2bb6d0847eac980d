"""Derived tables (duplicate filter, KPI aggregates): views on a server, roll-up when embedded.

Whichever way a store keeps them, they must hold exactly what the views' SELECTs
compute over every stored event: no event missed, none counted twice.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.storage.rows import NOW_MS
from tests.server.test_service import event, scrape, settings_for
from uptake_server.app import Service
from uptake_server.errors import StoreUnavailable
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.store import ClickHouseStore
from uptake_server.store.rollup import TABLES, Rollup
from uptake_server.store.schema import (
    KPI_FIRST_SEEN_SELECT,
    KPI_USER_DAYS_SELECT,
    KPI_USER_HOURS_SELECT,
)

HOURS_KEY = "tool, hour, user_id, org_unit, action, feature"
# What each table holds, merged however its parts are, next to what the view computes.
EXPECTED_AND_STORED = {
    "kpi_user_hours": (
        f"SELECT * FROM ({KPI_USER_HOURS_SELECT.format(where='')}) ORDER BY {HOURS_KEY}",
        f"SELECT {HOURS_KEY}, min(first_at), max(last_at), sum(events) FROM kpi_user_hours "
        f"GROUP BY {HOURS_KEY} ORDER BY {HOURS_KEY}",
    ),
    "kpi_user_days": (
        f"SELECT * FROM ({KPI_USER_DAYS_SELECT.format(where='')}) ORDER BY ALL",
        "SELECT DISTINCT * FROM kpi_user_days ORDER BY ALL",
    ),
    "kpi_first_seen": (
        f"SELECT * FROM ({KPI_FIRST_SEEN_SELECT.format(where='')}) ORDER BY ALL",
        "SELECT tool, user_id, action, min(first_at) FROM kpi_first_seen "
        "GROUP BY tool, user_id, action ORDER BY ALL",
    ),
    "event_ids": (
        "SELECT event_id FROM events ORDER BY event_id",
        "SELECT DISTINCT event_id FROM event_ids ORDER BY event_id",
    ),
}


def random_events(rng: random.Random, count: int) -> EventColumns:
    cols = EventColumns()
    for _ in range(count):
        cols.event_id.append(rng.randbytes(16))
        cols.occurred_at.append(NOW_MS - rng.randrange(0, 3 * 86_400_000))
        cols.received_at.append(NOW_MS)
        cols.tool.append(rng.choice(["wiki", "chat"]))
        cols.action.append(rng.choice(["page_view", "page_edit", "comment"]))
        cols.user_id.append(rng.randrange(12).to_bytes(16, "big"))
        cols.org_unit.append(rng.choice(["sales", "finance"]))
        cols.feature.append(rng.choice(["", "editor"]))
        cols.client.append("sdk-test")
        cols.property_keys.append([])
        cols.property_values.append([])
    return cols


def embedded(path: Path) -> ClickHouseStore:
    from uptake_server.store.dsn import parse_dsn
    from uptake_server.store.schema import SchemaContext

    store = ClickHouseStore(parse_dsn(f"chdb://{path}")[0])
    store.migrate(SchemaContext())
    return store


def test_derived_tables_hold_what_the_views_compute(store: ClickHouseStore) -> None:
    rng = random.Random(20261130)
    for batch in range(6):
        store.insert(random_events(rng, rng.randrange(1, 400)), FailedColumns())
        if batch % 2:
            store.roll_up()  # some slices rolled up alone, some two at a time
    assert store.roll_up() >= 0
    assert store.roll_up() == 0  # nothing new: nothing to do
    for table, (expected, stored) in EXPECTED_AND_STORED.items():
        assert store.query(stored) == store.query(expected), table


def test_a_roll_up_writes_its_marks_in_one_part(tmp_path: Path) -> None:
    store = embedded(tmp_path / "store")
    try:
        store.command("SYSTEM STOP MERGES kpi_rollup")
        parts = "SELECT count() FROM system.parts WHERE table = 'kpi_rollup' AND active"
        rng = random.Random(11)
        for n in range(1, 4):
            store.insert(random_events(rng, 20), FailedColumns())
            assert store.roll_up() == 20
            assert store.query(parts) == [(n,)]
            marks = store.query("SELECT aggregate, upto FROM kpi_rollup FINAL ORDER BY aggregate")
            assert marks == sorted((table, n) for table, _ in TABLES)
    finally:
        store.close()


class Killed(Exception):
    """The process stops here."""


def killed_at(command: Callable[[str], None], step: int) -> Callable[[str], None]:
    """Run the roll-up's commands until the `step`th, which never completes."""
    done = 0

    def run(sql: str) -> None:
        nonlocal done
        done += 1
        if done == step:
            raise Killed(sql)
        command(sql)

    return run


@pytest.mark.parametrize("step", range(1, len(TABLES) + 2))
def test_a_roll_up_cut_short_counts_a_slice_twice_only_in_hourly_event_counts(
    tmp_path: Path, step: int
) -> None:
    # Steps 1-4 are the tables' inserts, step 5 the marks. Killed at any of them,
    # the next process repeats the slice: every table exact, save the hourly event
    # counts when the kill came after the last table (the hourly one) was written.
    store = embedded(tmp_path / "store")
    try:
        store.insert(random_events(random.Random(step), 300), FailedColumns())
        cut = Rollup(killed_at(store.command, step), store.query)
        cut.load()
        with pytest.raises(Killed):
            cut.run()
    finally:
        store.close()  # its own roll-up has no marks yet: it rolls the slice up again
    again = embedded(tmp_path / "store")
    try:
        assert again.recover() == 0
        twice = step == len(TABLES) + 1  # killed after every table, before the marks
        for table, (expected, stored) in EXPECTED_AND_STORED.items():
            if table == "kpi_user_hours" and twice:
                stored = stored.replace("sum(events)", "intDiv(sum(events), 2)")
            assert again.query(stored) == again.query(expected), table
        if twice:  # the counts were doubled, not left as they were
            assert again.query("SELECT sum(events) FROM kpi_user_hours") == [(600,)]
    finally:
        again.close()


def test_close_rolls_up_and_a_reopened_store_goes_on_numbering(tmp_path: Path) -> None:
    rng = random.Random(5)
    first = embedded(tmp_path / "store")
    first.insert(random_events(rng, 50), FailedColumns())
    assert first.rollup_pending == 50
    first.close()  # rolls up
    second = embedded(tmp_path / "store")
    try:
        assert second.recover() == 0
        second.insert(random_events(rng, 30), FailedColumns())
        numbers = second.query("SELECT DISTINCT insert_seq FROM events ORDER BY insert_seq")
        assert numbers == [(1,), (2,)]
        assert second.roll_up() == 30
        for table, (expected, stored) in EXPECTED_AND_STORED.items():
            assert second.query(stored) == second.query(expected), table
    finally:
        second.close()


def held_first_insert(
    store: ClickHouseStore, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False
) -> tuple[threading.Event, threading.Event]:
    """Hold the store's next insert into events after it is numbered (or fail it there)."""
    numbered, release = threading.Event(), threading.Event()
    real = store.insert_columns
    first = True

    def insert_columns(table: str, columns: Any, **kwargs: Any) -> None:
        nonlocal first
        if table == "events" and first:
            first = False
            numbered.set()
            if fail:
                raise StoreUnavailable("the engine went away")
            assert release.wait(30), "never released"
        real(table, columns, **kwargs)

    monkeypatch.setattr(store, "insert_columns", insert_columns)
    return numbered, release


@pytest.fixture
def embedded_store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = embedded(tmp_path / "store")
    yield store
    store.close()


def test_a_roll_up_waits_for_an_insert_numbered_before_a_committed_one(
    embedded_store: ClickHouseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers: insert 1 is still being written when insert 2 commits. Rolling
    # up to 2 then would leave insert 1's events out of every derived table.
    store, rng = embedded_store, random.Random(8)
    numbered, release = held_first_insert(store, monkeypatch)
    slow = threading.Thread(target=store.insert, args=(random_events(rng, 40), FailedColumns()))
    slow.start()
    try:
        assert numbered.wait(30)
        later = random_events(rng, 25)
        store.insert(later, FailedColumns())
        assert store.roll_up() == 0  # held back by insert 1
        assert store.existing_ids(later.event_id) == set(later.event_id)  # still caught
    finally:
        release.set()
        slow.join(30)
    assert store.roll_up() == 65
    for table, (expected, stored) in EXPECTED_AND_STORED.items():
        assert store.query(stored) == store.query(expected), table


def test_a_failed_insert_does_not_hold_the_roll_up_back(
    embedded_store: ClickHouseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, rng = embedded_store, random.Random(9)
    held_first_insert(store, monkeypatch, fail=True)
    with pytest.raises(StoreUnavailable, match="the engine went away"):
        store.insert(random_events(rng, 40), FailedColumns())
    store.insert(random_events(rng, 25), FailedColumns())
    assert store.roll_up() == 25
    for table, (expected, stored) in EXPECTED_AND_STORED.items():
        assert store.query(stored) == store.query(expected), table


def test_the_service_rolls_up_in_the_background(tmp_path: Path) -> None:
    import grpc

    from uptake.v1 import ingest_pb2, ingest_pb2_grpc

    service = Service(settings_for(tmp_path / "var", rollup_interval_ms=50, kpi_enabled=False))
    service.start()
    try:
        with grpc.insecure_channel(service.grpc_target) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            users = [f"user-{i}" for i in range(7)]
            request = ingest_pb2.IngestRequest(
                events=[event(user_id=u, event_id=os.urandom(16)) for u in users], attempt=1
            )
            assert stub.Ingest(request, timeout=10).accepted == len(users)
        deadline = time.monotonic() + 10
        # store.query does not roll up: only the background thread can fill the table.
        while service.store.query("SELECT count() FROM kpi_first_seen")[0][0] < len(users):
            assert time.monotonic() < deadline, "no roll-up within 10 s"
            time.sleep(0.05)
        # The table fills before the roll-up ends (the hourly table and the marks come
        # after it); the roll-up is timed and the gauge set once it has ended.
        while True:
            metrics = scrape(service.metrics_url)
            if (
                metrics["uptake_store_rollup_duration_seconds_count{}"] >= 1
                and metrics["uptake_store_rollup_pending_events{}"] == 0
            ):
                break
            assert time.monotonic() < deadline, "no timed roll-up, or events left pending"
            time.sleep(0.05)
    finally:
        service.stop()
