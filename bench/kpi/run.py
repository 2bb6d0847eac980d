"""KPI refresh and scrape time with N events (default 10 million) in the embedded store.

Events are generated inside the engine (INSERT ... SELECT FROM numbers()), so the
materialized views fill as they would on ingest; then the refresher runs several
times and /metrics is scraped over HTTP. Prints a table; goals: refresh <= 2 s,
scrape <= 50 ms.

    make bench-kpi                      # 10 million events
    python bench/kpi/run.py --events 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from rich.console import Console
from rich.table import Table

from uptake_server.kpi.collector import KpiCollector
from uptake_server.kpi.plugins import discover_kpis
from uptake_server.kpi.reader import KpiReader
from uptake_server.kpi.refresher import PrivacyLimits, Refresher
from uptake_server.registry import parse_registry
from uptake_server.store import ClickHouseStore, SchemaContext
from uptake_server.store.dsn import parse_dsn

TOOLS = ("wiki", "chat", "crm", "docs", "erp")
DAYS = 120
CHUNK = 1_000_000

INSERT = """
INSERT INTO events (event_id, occurred_at, received_at, tool, action, user_id, org_unit,
                    feature, client, property_keys, property_values, insert_seq)
SELECT sipHash128(number) AS event_id,
       fromUnixTimestamp64Milli(toInt64({now_ms:Int64}
           - cityHash64(number) % toUInt64({days:UInt32} * 86400000)), 'UTC') AS occurred_at,
       occurred_at AS received_at,
       ['wiki', 'chat', 'crm', 'docs', 'erp'][cityHash64(number, 1) % 5 + 1] AS tool,
       ['view', 'edit', 'comment', 'share'][cityHash64(number, 3) % 4 + 1] AS action,
       sipHash128(concat('user-', toString(u))) AS user_id,
       concat('unit-', toString(u % {units:UInt32})) AS org_unit,
       ['', '', 'search', 'export', 'templates'][cityHash64(number, 4) % 5 + 1] AS feature,
       'bench' AS client, [] AS property_keys, [] AS property_values,
       {seq:UInt64} AS insert_seq
FROM (
    SELECT number, cityHash64(number, 2) % {users:UInt32} AS u
    FROM numbers({start:UInt64}, {count:UInt64})
)
"""

REGISTRY = {
    "tools": {
        tool: {
            "licensed_seats": 40_000,
            "go_live": "2026-01-05",
            "adoption_target": 0.6,
            "core_actions": ["edit", "share"] if tool == "docs" else [],
            "features": ["search", "export", "templates"],
        }
        for tool in TOOLS
    }
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--units", type=int, default=150)
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="uptake-bench-kpi-") as tmp:
        store = ClickHouseStore(parse_dsn(f"chdb://{Path(tmp) / 'store'}")[0])
        try:
            run(store, args, console)
        finally:
            store.close()


def run(store: ClickHouseStore, args: argparse.Namespace, console: Console) -> None:
    store.migrate(SchemaContext())
    reader = KpiReader(store)
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    # Straight into events, numbered like the store's own inserts; the first KPI
    # read then rolls them all up (store/rollup.py), which is timed below.
    for seq, start in enumerate(range(0, args.events, CHUNK), start=1):
        count = min(CHUNK, args.events - start)
        store.command(
            INSERT,
            {
                "seq": seq,
                "now_ms": now_ms,
                "days": DAYS,
                "units": args.units,
                "users": args.users,
                "start": start,
                "count": count,
            },
        )
        console.print(
            f"  inserted {start + count:>12,} events ({time.perf_counter() - started:.0f} s)"
        )
    began = time.perf_counter()
    rolled = store.roll_up()
    rollup_seconds = time.perf_counter() - began
    load_seconds = time.perf_counter() - started
    # Measure the steady state: background merges of the fresh parts finish first.
    deadline = time.monotonic() + 300
    while reader.query("SELECT count() FROM system.merges")[0][0] and time.monotonic() < deadline:
        time.sleep(1)
    settle_seconds = time.perf_counter() - started - load_seconds
    counts = {
        table: reader.query(f"SELECT count() FROM {table}")[0][0]
        for table in ("events", "kpi_user_hours", "kpi_user_days", "kpi_first_seen")
    }
    registry = parse_registry(REGISTRY)
    kpis = discover_kpis(registry, plugins=False)
    collector = KpiCollector(kpis)
    refresher = Refresher(
        reader, kpis=kpis, registry=registry, limits=PrivacyLimits(), on_snapshot=collector.publish
    )
    refreshes, refresh_cpu = [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.refreshes):
        began, cpu = time.perf_counter(), time.process_time()
        snapshot = refresher.refresh()
        refreshes.append(time.perf_counter() - began)
        refresh_cpu.append(time.process_time() - cpu)
    metrics = CollectorRegistry()
    metrics.register(collector)
    http, thread = start_http_server(0, "127.0.0.1", registry=metrics)
    url = f"http://127.0.0.1:{http.server_port}/metrics"
    scrapes, size = [], 0
    try:
        for _ in range(args.scrapes):
            began = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:
                size = len(response.read())
            scrapes.append(time.perf_counter() - began)
    finally:
        http.shutdown()
        http.server_close()
        thread.join()
    table = Table(title=f"KPI refresh and scrape, {counts['events']:,} events, embedded store")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    for name, value in counts.items():
        table.add_row(f"rows in {name}", f"{value:,}", "")
    table.add_row("load + roll-up (s)", f"{load_seconds:.1f}", "")
    table.add_row(f"roll-up of the {rolled:,} events (s)", f"{rollup_seconds:.1f}", "")
    table.add_row("merges settling (s)", f"{settle_seconds:.1f}", "")
    table.add_row("refresh, median (s)", f"{statistics.median(refreshes):.3f}", "<= 2")
    table.add_row("refresh, min / max (s)", f"{min(refreshes):.3f} / {max(refreshes):.3f}", "")
    table.add_row(
        "refresh CPU, median (s, all threads)", f"{statistics.median(refresh_cpu):.3f}", ""
    )
    table.add_row("load average (1 min) at refresh", f"{load_before:.1f}", f"< {os.cpu_count()}")
    table.add_row("series exported", f"{len(snapshot.series):,}", "")
    table.add_row(
        "series suppressed", ", ".join(f"{k} {v}" for k, v in snapshot.suppressed.items()), ""
    )
    table.add_row("scrape, median (ms)", f"{statistics.median(scrapes) * 1000:.1f}", "<= 50")
    table.add_row(
        "scrape, p95 (ms)", f"{sorted(scrapes)[int(len(scrapes) * 0.95) - 1] * 1000:.1f}", ""
    )
    table.add_row("exposition size (bytes)", f"{size:,}", "")
    console.print(table)


if __name__ == "__main__":
    main()
