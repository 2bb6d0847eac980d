"""The embedded engine gives back the memory it holds without using it (store/memory.py).

Measured in a fresh process on a private copy of the engine's package: the kernel
reclaims only pages no other process maps, and the test process (like the HTTP
fixture) has the engine's library loaded.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.server.test_service import settings_for
from tests.support.clickhouse_http import ClickHouseHTTP
from uptake_server.app import Service
from uptake_server.store import ClickHouseStore
from uptake_server.store.dsn import parse_dsn
from uptake_server.store.memory import ALLOCATOR_ENV, clean_file_ranges

MB = 2**20

PROBE = textwrap.dedent(
    """
    import json, sys, tempfile
    from uptake_server.store import ClickHouseStore, SchemaContext
    from uptake_server.store.dsn import parse_dsn

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    def private_code():
        # Pages of the engine's library no other process maps: the ones it can reclaim.
        total, ours = 0, False
        for line in open("/proc/self/smaps"):
            fields = line.split()
            if not fields[0].endswith(":"):
                ours = len(fields) > 5 and "/chdb/" in fields[5] and "w" not in fields[1]
            elif ours and fields[0] in ("Private_Clean:", "Private_Dirty:"):
                total += int(fields[1]) * 1024
            elif ours and fields[0] == "Anonymous:":  # relocated pages: memory, not file
                total -= int(fields[1]) * 1024
        return total

    store = ClickHouseStore(parse_dsn(f"chdb://{tempfile.mkdtemp()}/store")[0])
    store.migrate(SchemaContext())
    import chdb
    out = {"engine": chdb.__file__, "file_before": status("RssFile")}
    out["private_before"] = private_code()
    out["released"] = store.trim_memory(code="evict")
    out["file_after"] = status("RssFile")
    out["private_after"] = private_code()
    # The engine still works: its code comes back as it is used.
    out["count"] = store.query("SELECT count() FROM numbers(1000) WHERE number % 7 = 0")[0][0]
    # What that query mapped again is unmapped; relocated read-only pages are left alone
    # (dropping them would crash the engine at its next query).
    from uptake_server.store import memory
    mappings = memory.code_mappings()
    out["clean"] = len(mappings.ranges)
    out["read_only"] = sum(
        1 for line in open("/proc/self/maps")
        if "/chdb/" in line and "w" not in line.split()[1]
    )
    out["file_before_unmap"] = status("RssFile")
    out["unmapped"] = store.trim_memory(code="unmap")
    out["file_after_unmap"] = status("RssFile")
    out["count_after_unmap"] = store.query("SELECT sum(number) FROM numbers(1000)")[0][0]
    anon_before_query = status("RssAnon")
    store.query("SELECT length(groupArray(number)) FROM numbers(20000000)")
    out["anon_grown"] = status("RssAnon") - anon_before_query
    store.trim_memory()
    out["anon_after_trim"] = status("RssAnon") - anon_before_query
    store.close()
    json.dump(out, sys.stdout)
    """
)


def run_python(code: str, *args: str, env: dict[str, str]) -> str:
    """Run code in a fresh interpreter; return what it printed."""
    run = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_embedded_engine_gives_back_start_up_code_and_freed_pages(tmp_path: Path) -> None:
    import chdb

    package = Path(chdb.__file__).parent
    shutil.copytree(package, tmp_path / "chdb")
    # The library finds its helper libraries beside the package ($ORIGIN/../chdb_core.libs).
    for libs in package.parent.glob("chdb*.libs"):
        (tmp_path / libs.name).symlink_to(libs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = json.loads(run_python(PROBE, env=env))
    assert out["engine"].startswith(str(tmp_path))
    # Starting the engine maps about 200 MB of its library; nearly all of it goes (some
    # pages are in use again at once).
    assert out["private_before"] > 100 * MB
    assert out["private_after"] < out["private_before"] / 10
    assert out["released"] > out["private_before"] * 0.8
    assert out["file_before"] - out["file_after"] >= out["released"] - 2 * MB
    assert out["count"] == 143
    # Unmapping: the query's code went (the pages stay cached), the relocated mappings
    # stayed, and the engine still answers.
    assert 0 < out["clean"] < out["read_only"]
    assert out["unmapped"] > 1 * MB
    assert out["file_before_unmap"] - out["file_after_unmap"] >= out["unmapped"] - 2 * MB
    assert out["count_after_unmap"] == 499500
    # A query that builds a 160 MB array: its pages stay with the allocator until purged.
    assert out["anon_grown"] > 100 * MB
    assert out["anon_after_trim"] < out["anon_grown"] / 4


def test_a_server_store_sends_the_server_nothing(clickhouse_http: ClickHouseHTTP) -> None:
    """A server's memory is its own: no SYSTEM statement goes to it, nothing is released."""
    dsn = f"{clickhouse_http.url.replace('://', '://default@')}/default"
    store = ClickHouseStore(parse_dsn(dsn)[0])
    try:
        store.query("SELECT 1")
        mark = clickhouse_http.mark()
        assert store.trim_memory(code="evict") == 0
        assert store.trim_memory(code="unmap") == 0
        assert clickhouse_http.requests(since=mark) == []
    finally:
        store.close()


NO_PANDAS = textwrap.dedent(
    """
    import sys
    from tests.server.storage.rows import events_of, failed_of
    from uptake_server.store import ClickHouseStore, SchemaContext
    from uptake_server.store.dsn import parse_dsn

    store = ClickHouseStore(parse_dsn(sys.argv[1])[0])
    store.migrate(SchemaContext())
    store.insert(events_of(b"\\x07" * 16, 3), failed_of(b"\\x07" * 16, 1))
    rows = store.query("SELECT count() FROM events")
    store.close()
    print(rows[0][0], "pandas" in sys.modules)
    """
)


def test_inserts_leave_pandas_unloaded(tmp_path: Path) -> None:
    # clickhouse-connect would import pandas at the first insert and keep its 28 MB.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = run_python(NO_PANDAS, f"chdb://{tmp_path / 'store'}", env=env)
    assert out.split() == ["3", "False"]


ALLOCATOR = textwrap.dedent(
    """
    import sys
    from uptake_server.store import ClickHouseStore
    from uptake_server.store.dsn import parse_dsn

    store = ClickHouseStore(parse_dsn(sys.argv[1])[0])
    stats = store.query("SELECT stats FROM system.jemalloc_stats")[0][0]
    store.close()
    for line in stats.splitlines():
        if line.strip().startswith(("opt.tcache_max:", "opt.tcache_nslots_small_max:")):
            print(line.strip())
    """
)


def test_the_engine_allocator_keeps_small_thread_caches(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name != ALLOCATOR_ENV}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    dsn = f"chdb://{tmp_path / 'store'}"
    # The engine's defaults are 32768 and 200.
    assert run_python(ALLOCATOR, dsn, env=env).splitlines() == [
        "opt.tcache_max: 1024",
        "opt.tcache_nslots_small_max: 20",
    ]
    # An operator's own options win over the service's.
    env[ALLOCATOR_ENV] = "tcache_max:4096"
    assert run_python(ALLOCATOR, dsn, env=env).splitlines() == [
        "opt.tcache_max: 4096",
        "opt.tcache_nslots_small_max: 20",
    ]


SMAPS = """\
00400000-00500000 r--p 00000000 fd:01 11 /opt/engine/lib.so
Rss:                 100 kB
Anonymous:             0 kB
VmFlags: rd mr mw me
00500000-00900000 r-xp 00100000 fd:01 11 /opt/engine/lib.so
Rss:                2048 kB
Anonymous:             0 kB
00900000-00a00000 r--p 00500000 fd:01 11 /opt/engine/lib.so
Rss:                 512 kB
Anonymous:           512 kB
00a00000-00b00000 rw-p 00600000 fd:01 11 /opt/engine/lib.so
Anonymous:             0 kB
00b00000-00c00000 r-xp 00000000 fd:01 12 /opt/engine-old/lib.so
Anonymous:             0 kB
00c00000-00d00000 r-xp 00000000 fd:01 13 /opt/engine/helper lib.so
Anonymous:             0 kB
00d00000-00e00000 rw-p 00000000 00:00 0
Anonymous:           128 kB
"""


def test_only_clean_read_only_mappings_of_the_engine_are_unmapped() -> None:
    # Relocated (anonymous) and writable pages, and other files, are never dropped.
    assert clean_file_ranges(SMAPS, Path("/opt/engine")) == [
        (0x400000, 0x500000),
        (0x500000, 0x900000),
        (0xC00000, 0xD00000),
    ]
    assert clean_file_ranges("", Path("/opt/engine")) == []


def trimmers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "uptake-memory"]


def test_the_service_trims_the_engine_memory_in_the_background(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        tmp_path / "var",
        memory_trim_interval_ms=20,
        code_unmap_interval_seconds=0.05,
        kpi_enabled=False,
    )
    service = Service(settings)
    with caplog.at_level(logging.DEBUG, logger="uptake_server.app"):
        service.start()
        try:
            deadline = time.monotonic() + 10
            while not any("unmapped" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "no code unmapped within 10 s"
                time.sleep(0.02)
            assert len(trimmers()) == 1
        finally:
            service.stop()
    assert trimmers() == []


def test_a_zero_trim_interval_starts_no_trimmer(tmp_path: Path) -> None:
    service = Service(settings_for(tmp_path / "var", memory_trim_interval_ms=0, kpi_enabled=False))
    service.start()
    try:
        assert trimmers() == []
    finally:
        service.stop()


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


def twin_parts(
    store: ClickHouseStore, twin: str, parts: int, rows: int, at_ms: int | None = None
) -> None:
    """Insert `parts` parts of random events, each copied into the table `twin` as a
    part of its own, with merges stopped on both (all at `at_ms`, give or take an hour)."""
    from tests.server.storage.test_rollup import random_events
    from uptake_server.model import FailedColumns

    store.command("SYSTEM STOP MERGES events")
    store.command(f"SYSTEM STOP MERGES {twin}")
    rng = random.Random(parts)
    for seq in range(1, parts + 1):
        events = random_events(rng, rows)
        if at_ms is not None:
            events.occurred_at = [at_ms - rng.randrange(3_600_000) for _ in range(rows)]
        store.insert(events, FailedColumns(), lookup=[])
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
        # One partition, so one merge: every event on the 15th of the previous month.
        first = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
        noon = int((first - timedelta(days=1)).replace(day=15).timestamp() * 1000)
        twin_parts(store, "horizontal", 9, 40_000, at_ms=noon)
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


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> bool:
    """Poll `condition` every 0.1 s; return whether it held within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_embedded_events_and_event_ids_merge_about_ten_parts_at_a_time(tmp_path: Path) -> None:
    # ClickHouse merges a range of parts once their total is `merge_selector_base`
    # times the largest (5 by default; lowered only for parts older than 10 s): seven
    # equal parts merge in a copy of `events` with the default, and stay seven in
    # `events` until eleven are there.
    from tests.server.storage.test_rollup import random_events
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
        # One partition: every event on the 15th of the previous month.
        first = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
        noon = int((first - timedelta(days=1)).replace(day=15).timestamp() * 1000)
        twin_parts(store, "narrow", 7, 2_000, at_ms=noon)
        assert (active_parts(store, "events"), active_parts(store, "narrow")) == (7, 7)
        store.command("SYSTEM START MERGES narrow")
        store.command("SYSTEM START MERGES events")
        assert wait_for(lambda: active_parts(store, "narrow") < 7), "the default never merged"
        time.sleep(1)  # a second more for `events`, with the merge pool idle
        left = active_parts(store, "events")
        rng = random.Random(11)
        for _ in range(4):
            events = random_events(rng, 2_000)
            events.occurred_at = [noon - rng.randrange(3_600_000) for _ in range(2_000)]
            store.insert(events, FailedColumns(), lookup=[])
        merged = wait_for(lambda: active_parts(store, "events") <= 2)
        rows = store.query("SELECT count() FROM events", role="health")
    finally:
        store.close()
    assert left == 7
    assert merged, "eleven parts were never merged"
    assert rows == [(22_000,)]
