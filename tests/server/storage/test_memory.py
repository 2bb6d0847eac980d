"""The embedded engine gives back the memory it holds without using it (store/memory.py).

Measured in a fresh process on a private copy of the engine's package: the kernel
reclaims only pages no other process maps, and the test process (like the HTTP
fixture) has the engine's library loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
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
    # trim_memory purges the allocator (a statement) before it unmaps: run that once
    # first, so the statement's own code is resident when the readings are taken.
    store.trim_memory()
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
