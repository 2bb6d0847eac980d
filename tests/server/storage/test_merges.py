"""The embedded store's merges: small blocks, column by column, about ten parts at a time.

Each test merges the same parts in `events` and in a copy of the table that keeps
ClickHouse's default for the one setting under test.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.polling import wait_for
from uptake_server.model import EventColumns
from uptake_server.store import ClickHouseStore
from uptake_server.store.dsn import parse_dsn

MB = 2**20


def merge_peak(store: ClickHouseStore, table: str) -> tuple[float, set[str]]:
    """Merge a table's parts into one; return the merge's peak memory in MB and the
    merge algorithms seen while it ran."""
    peak, algorithms, done = [0.0], set(), threading.Event()

    def sample() -> None:
        while not done.is_set():
            for memory, algorithm in store.query(
                "SELECT memory_usage, merge_algorithm FROM system.merges WHERE table = {t:String}",
                {"t": table},
                role="health",
            ):
                peak[0] = max(peak[0], memory / MB)
                if algorithm != "Undecided":  # a merge's first moments
                    algorithms.add(algorithm)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        store.command(f"SYSTEM START MERGES {table}")
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    finally:
        done.set()
        sampler.join()
    return peak[0], algorithms


def engines(store: ClickHouseStore) -> dict[str, str]:
    """Return each table's engine with its settings."""
    rows = store.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()",
        role="health",
    )
    return {str(name): str(engine) for name, engine in rows}


def mid_previous_month_ms() -> int:
    """Return noon on the 15th of the previous month in ms: events up to an hour before
    it fall in one monthly partition."""
    first = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    return int((first - timedelta(days=1)).replace(day=15).timestamp() * 1000)


def events_at(rng: random.Random, rows: int, at_ms: int | None = None) -> EventColumns:
    """Return `rows` random events, all at `at_ms` give or take an hour (if given)."""
    from tests.server.storage.test_rollup import random_events

    events = random_events(rng, rows)
    if at_ms is not None:
        events.occurred_at = [at_ms - rng.randrange(3_600_000) for _ in range(rows)]
    return events


def twin_parts(
    store: ClickHouseStore, twin: str, parts: int, rows: int, at_ms: int | None = None
) -> None:
    """Insert `parts` parts of random events, each copied into the table `twin` as a
    part of its own, with merges stopped on both (all at `at_ms`, give or take an hour)."""
    from uptake_server.model import FailedColumns

    store.command("SYSTEM STOP MERGES events")
    store.command(f"SYSTEM STOP MERGES {twin}")
    rng = random.Random(parts)
    for seq in range(1, parts + 1):
        store.insert(events_at(rng, rows, at_ms), FailedColumns(), lookup=[])
        store.command(f"INSERT INTO {twin} SELECT * FROM events WHERE insert_seq = {seq}")


def test_embedded_events_are_merged_in_small_blocks(tmp_path: Path) -> None:
    # Seven parts of `events` merged into one, next to the same parts in a table with
    # ClickHouse's default settings, where a merge takes 56-76 MB however small the
    # parts: it reads and writes every column stream at once, each with 1 MiB
    # compression buffers (25 MB against 65 MB when measured).
    from uptake_server.store import SchemaContext

    store = ClickHouseStore(parse_dsn(f"chdb://{tmp_path / 'store'}")[0])
    try:
        store.migrate(SchemaContext())
        engine = engines(store)
        assert "max_compress_block_size = 65536" in engine["events"]
        assert "max_compress_block_size = 65536" in engine["kpi_user_hours"]
        key = "tool, org_unit, toDate(occurred_at), user_id"
        store.command(f"CREATE TABLE plain AS events ENGINE = MergeTree ORDER BY ({key})")
        twin_parts(store, "plain", 7, 50_000)
        tuned, _ = merge_peak(store, "events")
        plain, _ = merge_peak(store, "plain")
        parts = store.query(
            "SELECT table, count() FROM system.parts WHERE active AND table IN ('events', 'plain') "
            "GROUP BY table ORDER BY table",
            role="health",
        )
    finally:
        store.close()
    assert 0 < tuned < 40 < plain, (tuned, plain)
    assert tuned * 2 < plain, (tuned, plain)
    assert {count for _, count in parts} <= {1, 2}  # merged (a month boundary makes two)


def test_embedded_events_are_merged_column_by_column(tmp_path: Path) -> None:
    # Nine parts of `events` (360,000 rows, above the 131,072 from which a merge may
    # go vertical), and the same parts in a copy of the table with ClickHouse's
    # default, which merges tables with fewer than 11 columns outside the sorting key
    # horizontally: every column stream of every part read at once (20 MB against
    # 48-50 MB for nine parts of 300,000 rows when measured).
    from uptake_server.store import SchemaContext

    store = ClickHouseStore(parse_dsn(f"chdb://{tmp_path / 'store'}")[0])
    try:
        store.migrate(SchemaContext())
        store.command("CREATE TABLE horizontal AS events")  # the same engine and settings
        store.command(
            "ALTER TABLE horizontal RESET SETTING vertical_merge_algorithm_min_columns_to_activate"
        )
        engine = engines(store)
        assert "vertical_merge_algorithm_min_columns_to_activate = 1" in engine["events"]
        assert "vertical_merge_algorithm" not in engine["horizontal"]
        assert "max_compress_block_size = 65536" in engine["horizontal"]
        # One partition, so one merge.
        twin_parts(store, "horizontal", 9, 40_000, at_ms=mid_previous_month_ms())
        vertical, algorithms = merge_peak(store, "events")
        horizontal, others = merge_peak(store, "horizontal")
        rows = store.query(
            "SELECT (SELECT count() FROM events), (SELECT count() FROM horizontal)", role="health"
        )
    finally:
        store.close()
    assert algorithms == {"Vertical"} and others == {"Horizontal"}, (algorithms, others)
    assert 0 < vertical * 1.5 < horizontal, (vertical, horizontal)
    assert rows == [(360_000, 360_000)]


def active_parts(store: ClickHouseStore, table: str) -> int:
    """Return how many active parts a table has."""
    rows = store.query(
        "SELECT count() FROM system.parts WHERE active AND database = currentDatabase() "
        "AND table = {t:String}",
        {"t": table},
        role="health",
    )
    return int(rows[0][0])


def test_embedded_events_and_event_ids_merge_about_ten_parts_at_a_time(tmp_path: Path) -> None:
    # ClickHouse merges a range of parts once their total is `merge_selector_base`
    # times the largest (5 by default; lowered only for parts older than 10 s): seven
    # equal parts merge in a copy of `events` with the default, and stay seven in
    # `events` until eleven are there.
    from uptake_server.model import FailedColumns
    from uptake_server.store import SchemaContext

    store = ClickHouseStore(parse_dsn(f"chdb://{tmp_path / 'store'}")[0])
    try:
        store.migrate(SchemaContext())
        store.command("CREATE TABLE narrow AS events")  # the same engine and settings
        store.command("ALTER TABLE narrow RESET SETTING merge_selector_base")
        engine = engines(store)
        assert "merge_selector_base = 10" in engine["events"]
        assert "merge_selector_base = 10" in engine["event_ids"]
        assert "merge_selector_base" not in engine["narrow"]
        noon = mid_previous_month_ms()  # one partition
        twin_parts(store, "narrow", 7, 2_000, at_ms=noon)
        assert (active_parts(store, "events"), active_parts(store, "narrow")) == (7, 7)
        store.command("SYSTEM START MERGES narrow")
        store.command("SYSTEM START MERGES events")
        wait_for(lambda: active_parts(store, "narrow") < 7, timeout=60, what="the default's merge")
        time.sleep(1)  # a second more for `events`, with the merge pool idle
        left = active_parts(store, "events")
        rng = random.Random(11)
        for _ in range(4):
            store.insert(events_at(rng, 2_000, noon), FailedColumns(), lookup=[])
        wait_for(lambda: active_parts(store, "events") <= 2, timeout=60, what="a merge of eleven")
        rows = store.query("SELECT count() FROM events", role="health")
    finally:
        store.close()
    assert left == 7
    assert rows == [(22_000,)]
