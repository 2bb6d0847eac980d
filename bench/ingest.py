"""Ingestion benchmark: end to end through the SDK against the direct bulk-insert limit.

Runs, on loopback and a fresh embedded store each time:

1. the limit: the same kind of events written by the store's own write path from
   one process, in 50,000-row inserts, then rolled up (duplicate filter, KPI
   aggregates): what the store costs per event, without gRPC around it;
2. end to end: SDK clients in separate processes -> one server -> embedded store,
   for each batch size and client count; every event is acknowledged only after
   commit, and the store's row count is checked against what was acknowledged;
3. acknowledgement latency at half rate, p50 and p99: two raw gRPC clients send
   first sends open loop (each request at its time, answered or not, its latency
   counted from that time), in the best configuration's requests at half the best
   rate, and in the SDK's default 500-event requests at half the best rate those
   reach; each with the rate actually acknowledged;
4. sustained: the best configuration for --sustain-seconds (default 300), clients
   blocking on a full queue, with the server's memory trend and the median RSS of
   each minute;
5. server memory (RSS) sampled every 0.5 s during every run.

Prints the figures and each target met or not, and writes them as JSON (default
bench-results/ingest.json).

    .venv/bin/python bench/ingest.py            # everything, about 10 minutes
    .venv/bin/python bench/ingest.py --quick    # one configuration, short runs
    # one configuration, then 20 minutes of it: does memory settle?
    .venv/bin/python bench/ingest.py --clients 2 --batch 10000 --sustain-seconds 1200

The stores live in a temporary directory (TMPDIR): the table's title names its file
system, and the benchmark says so when it is ext4 without a journal, where every
file the store creates costs more (docs/operations.md, "File system").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import uptake  # noqa: E402
from bench.limit import direct_insert_rate  # noqa: E402
from bench.load import latency_client, sdk_client  # noqa: E402
from bench.memory import RssSampler, minute_medians, trend_per_minute  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402
from uptake_server.store.filesystem import mount_of, unjournaled_ext4  # noqa: E402


@dataclass
class Run:
    """The figures of one end-to-end configuration."""

    clients: int
    batch: int
    events: int
    seconds: float
    events_per_second: float
    stored: int
    rss_start_mb: float
    rss_max_mb: float
    rss_end_mb: float
    rss_samples_mb: list[float] = field(default_factory=list)
    # Least-squares trend of RSS after the first fifth of the run (warm-up).
    rss_trend_mb_per_min: float = 0.0
    # The median RSS of each minute of the run: a rising level or a settled one.
    rss_minute_medians_mb: list[float] = field(default_factory=list)
    # The largest part of RSS that is mapped files (the engine's code), not memory.
    rss_files_max_mb: float = 0.0


def end_to_end(
    clients: int, batch: int, events_per_client: int, work: Path, seconds: float = 0.0
) -> Run:
    """Run SDK clients against a fresh server and return the figures.

    With `seconds`, each client tracks for that long instead of a number of events.
    """
    data_dir = Path(tempfile.mkdtemp(dir=work))
    server = ServerProcess(data_dir / "var")
    server.start()
    assert server.process is not None
    sampler = RssSampler(server.process.pid)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(
            target=sdk_client, args=(server.target, events_per_client, batch, k, out, seconds)
        )
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=max(1200.0, seconds + 600)) for _ in procs]
    for p in procs:
        p.join()
    samples = sampler.stop()
    server.stop()
    stored = in_subprocess(stored_count, data_dir / "var")
    started = min(r[0] for r in results)
    finished = max(r[1] for r in results)
    total = sum(r[3] for r in results)
    if not all(r[2] for r in results) or stored != total:
        raise SystemExit(f"lost events: {total} acknowledged, {stored} stored")
    elapsed = finished - started
    return Run(
        clients=clients,
        batch=batch,
        events=total,
        seconds=round(elapsed, 2),
        events_per_second=round(total / elapsed),
        stored=stored,
        rss_start_mb=round(samples[0], 1),
        rss_max_mb=round(max(samples), 1),
        rss_end_mb=round(samples[-1], 1),
        rss_samples_mb=[round(s, 1) for s in samples],
        rss_trend_mb_per_min=round(trend_per_minute(samples, sampler.interval), 2),
        rss_minute_medians_mb=minute_medians(samples, sampler.interval),
        rss_files_max_mb=round(sampler.files_mb, 1),
    )


def in_subprocess(function: Callable[..., T], *args: object) -> T:
    """Run a function that opens an embedded store in a process of its own.

    An engine loaded into this process would keep its background threads (merges)
    running through the measurements that follow.
    """
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def stored_count(data_dir: Path) -> int:
    """Return how many events a data directory holds (no server running on it)."""
    from uptake_server.store import ClickHouseStore
    from uptake_server.store.dsn import parse_dsn

    store = ClickHouseStore(parse_dsn(f"chdb://{data_dir / 'store'}")[0])
    try:
        return int(store.query("SELECT count() FROM events")[0][0])
    finally:
        store.close()


def latency(rate: float, clients: int, batch: int, seconds: float, work: Path) -> dict[str, float]:
    """Return p50 and p99 acknowledgement latency at a total rate held open loop."""
    # Start from a quiet disk: the earlier runs' data may still be written back.
    os.sync()
    data_dir = Path(tempfile.mkdtemp(dir=work))
    with ServerProcess(data_dir / "var") as server:
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [
            ctx.Process(
                target=latency_client,
                args=(server.target, batch, rate / clients, seconds, out, k / clients),
            )
            for k in range(clients)
        ]
        for p in procs:
            p.start()
        reports = [out.get(timeout=seconds + 600) for _ in procs]
        for p in procs:
            p.join()
    samples = sorted(x for latencies, _ in reports for x in latencies)
    return {
        "target_events_per_second": round(rate),
        "rate_events_per_second": round(sum(acknowledged for _, acknowledged in reports)),
        "requests": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 1),
    }


MATRIX = [
    (1, 500),
    (2, 500),
    (4, 500),
    (8, 500),
    (2, 100),
    (4, 2000),
    (2, 5000),
    (4, 5000),
    (2, 10_000),
]
# The targets: events/s, share of the limit, latency at half rate, memory.
TARGET_RATE = 100_000
TARGET_RATIO = 0.6
TARGET_P50_MS = 20
TARGET_P99_MS = 100
TARGET_RSS_MB = 500
# The SDK's default batch size: the requests of a client left as it comes.
SDK_BATCH = uptake.Options().batch_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one configuration, short runs")
    parser.add_argument("--events", type=int, default=400_000, help="events per configuration")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument(
        "--sustain-seconds",
        type=float,
        default=None,
        help="length of the run at the best configuration (memory trend; default 300, "
        "20 with --quick); 0 skips it",
    )
    parser.add_argument(
        "--clients", type=int, help="with --batch: this one configuration instead of the matrix"
    )
    parser.add_argument("--batch", type=int, help="with --clients: see --clients")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "ingest.json"))
    args = parser.parse_args()
    if (args.clients is None) != (args.batch is None):
        parser.error("--clients and --batch go together (one configuration)")
    if args.clients is not None and (args.clients < 1 or args.batch < 1):
        parser.error("--clients and --batch must be at least 1")
    if args.sustain_seconds is None:
        args.sustain_seconds = 20.0 if args.quick else 300.0
    if args.quick:
        args.events, args.latency_seconds = min(args.events, 100_000), 5.0
    console = Console()
    matrix = [(4, 2000)] if args.quick else MATRIX
    if args.clients is not None:
        matrix = [(args.clients, args.batch)]
    sustained: Run | None = None
    with tempfile.TemporaryDirectory(prefix="uptake-bench-") as tmp:
        work = Path(tmp)
        mount = mount_of(work)
        filesystem = mount[2] if mount else "unknown"
        if unjournaled_ext4(work):
            filesystem = "ext4 without a journal"
            console.print(
                f"note: {work} is on ext4 without a journal: every file the store creates "
                "costs more there, most of all with small inserts (docs/operations.md, "
                "File system); set TMPDIR to a directory on a journaled file system to "
                "measure without it"
            )
        console.print("measuring the direct bulk-insert limit ...")
        limit = in_subprocess(direct_insert_rate, args.events, work)
        runs = []
        for clients, batch in matrix:
            console.print(f"end to end: {clients} SDK client process(es), batch {batch} ...")
            runs.append(end_to_end(clients, batch, args.events // clients, work))
        best = max(runs, key=lambda r: r.events_per_second)
        # Latency at half rate, open loop: in the best configuration's requests, and in
        # the SDK's default requests at half the best rate those reach (beyond their
        # own best rate, small requests would only queue up).
        latencies: dict[str, dict[str, float]] = {}
        small = [r for r in runs if r.batch == SDK_BATCH and r is not best]
        shapes = [(best, "best configuration")]
        if small:
            shapes.append((max(small, key=lambda r: r.events_per_second), "SDK default"))
        for run, name in shapes:
            rate = run.events_per_second / 2
            console.print(f"latency: {run.batch}-event requests at {rate:,.0f} events/s ...")
            latencies[name] = {
                "batch": run.batch,
                **latency(rate, 2, run.batch, args.latency_seconds, work),
            }
        if args.sustain_seconds:
            console.print(
                f"sustained: {best.clients} clients, batch {best.batch}, "
                f"{args.sustain_seconds:.0f} s ..."
            )
            sustained = end_to_end(best.clients, best.batch, 0, work, args.sustain_seconds)
    table = Table(title=f"Uptake ingestion, {os.cpu_count()} cores, embedded store on {filesystem}")
    for column in (
        "server processes",
        "SDK clients",
        "batch",
        "events",
        "seconds",
        "events/s",
        "% of limit",
        "RSS max MB",
    ):
        table.add_column(column, justify="right")
    for r in [*runs, *([sustained] if sustained else [])]:
        table.add_row(
            "1",
            str(r.clients),
            str(r.batch) + (" (sustained)" if r is sustained else ""),
            f"{r.events:,}",
            f"{r.seconds:.1f}",
            f"{r.events_per_second:,}",
            f"{100 * r.events_per_second / limit:.0f}%",
            f"{r.rss_max_mb:.0f}",
        )
    console.print(table)
    if sustained:
        console.print(
            "RSS of the sustained run, median of each minute (MB): "
            + ", ".join(f"{mb:.0f}" for mb in sustained.rss_minute_medians_mb)
        )
    console.print(
        f"direct bulk-insert limit (the store's write path, one process): {limit:,.0f} events/s"
    )
    peak = sustained or best
    checks = Table(title="targets")
    for column in ("target", "measured", "met"):
        checks.add_column(column)
    rows = [
        (
            f">= {TARGET_RATE:,} events/s",
            f"{best.events_per_second:,}",
            best.events_per_second >= TARGET_RATE,
        ),
        (
            f">= {TARGET_RATIO:.0%} of the limit",
            f"{best.events_per_second / limit:.0%}",
            best.events_per_second >= TARGET_RATIO * limit,
        ),
        *(
            (
                f"p{q} <= {bound} ms at half rate, {name} ({lat['batch']:.0f}-event requests)",
                f"{lat[f'p{q}_ms']} ms at {lat['rate_events_per_second']:,} events/s",
                lat[f"p{q}_ms"] <= bound,
            )
            for name, lat in latencies.items()
            for q, bound in ((50, TARGET_P50_MS), (99, TARGET_P99_MS))
        ),
        (
            f"RSS <= {TARGET_RSS_MB} MB at the best rate",
            f"{peak.rss_max_mb:.0f} MB max (mapped files {peak.rss_files_max_mb:.0f} MB), "
            f"trend {peak.rss_trend_mb_per_min:+.1f} MB/min over {peak.seconds:.0f} s",
            peak.rss_max_mb <= TARGET_RSS_MB,
        ),
    ]
    for name, measured, met in rows:
        checks.add_row(name, measured, "yes" if met else "no")
    console.print(checks)
    result = {
        "cores": os.cpu_count(),
        "server_processes": 1,
        "data_filesystem": filesystem,
        "direct_insert_events_per_second": round(limit),
        "runs": [asdict(r) for r in runs],
        "sustained": asdict(sustained) if sustained else None,
        "best_events_per_second": best.events_per_second,
        "ratio_to_limit": round(best.events_per_second / limit, 3),
        "latency_at_half_rate": latencies,
        "targets_met": {name: met for name, _, met in rows},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
