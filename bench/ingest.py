"""Ingestion benchmark: end to end through the SDK against the direct bulk-insert limit.

Runs, on loopback and a fresh embedded store each time:

1. the limit: the same kind of events bulk-inserted straight into the store from
   one process (clickhouse-connect, 50,000-row inserts);
2. end to end: SDK clients in separate processes -> one server -> embedded store,
   for each batch size and client count; every event is acknowledged only after
   commit, and the store's row count is checked against what was sent;
3. acknowledgement latency at half the best end-to-end rate (raw gRPC clients
   sending paced batches), p50 and p99;
4. server memory (RSS) sampled during every run.

Prints a table and writes the figures as JSON (default bench-results/ingest.json).

    .venv/bin/python bench/ingest.py            # full matrix, a few minutes
    .venv/bin/python bench/ingest.py --quick    # one configuration
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.support.servers import ServerProcess, stored_events  # noqa: E402

ORG_UNITS = [f"unit-{i:02d}" for i in range(40)]
ACTIONS = ["page_view", "page_edit", "comment", "search", "share"]


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


def sdk_client(target: str, events: int, batch: int, seed: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Track `events` events with one SDK client and report its timing."""
    import uptake

    client = uptake.Client(target, batch_size=batch, max_queue_size=events + 1, strict=False)
    started = time.perf_counter()
    for i in range(events):
        n = seed * 1_000_003 + i
        client.track(
            f"user-{n % 20_000}",
            ACTIONS[n % len(ACTIONS)],
            tool="wiki" if n % 3 else "chat",
            org_unit=ORG_UNITS[n % len(ORG_UNITS)],
            feature="editor",
        )
    delivered = client.flush(900)
    finished = time.perf_counter()
    stats = client.stats()
    client.close(10)
    out.put((started, finished, delivered, stats.delivered, time.time()))


def latency_client(
    target: str,
    batch: int,
    rate: float,
    seconds: float,
    out: mp.Queue,  # type: ignore[type-arg]
) -> None:
    """Send `batch`-event requests at `rate` events/s for `seconds`; report latencies."""
    import grpc

    from uptake.v1 import ingest_pb2, ingest_pb2_grpc

    now = int(time.time() * 1000)
    request = ingest_pb2.IngestRequest(
        events=[
            ingest_pb2.Event(
                event_id=os.urandom(16),
                occurred_at_ms=now,
                tool="wiki",
                action=ACTIONS[i % len(ACTIONS)],
                user_id=f"user-{i}",
                org_unit=ORG_UNITS[i % len(ORG_UNITS)],
            )
            for i in range(batch)
        ]
    )
    interval = batch / rate
    latencies = []
    with grpc.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        next_send = time.perf_counter()
        end = next_send + seconds
        while next_send < end:
            delay = next_send - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for event in request.events:
                event.event_id = os.urandom(16)
            started = time.perf_counter()
            stub.Ingest(request, timeout=30)
            latencies.append(time.perf_counter() - started)
            next_send += interval
    out.put(latencies)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Sample a process's resident memory every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.samples = pid, interval, [rss_mb(pid)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(rss_mb(self.pid))

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb(self.pid))
        return self.samples


def end_to_end(clients: int, batch: int, events_per_client: int, work: Path) -> Run:
    """Run SDK clients against a fresh server and return the figures."""
    data_dir = Path(tempfile.mkdtemp(dir=work))
    server = ServerProcess(data_dir / "var")
    server.start()
    assert server.process is not None
    sampler = RssSampler(server.process.pid)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=sdk_client, args=(server.target, events_per_client, batch, k, out))
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=1200) for _ in procs]
    for p in procs:
        p.join()
    samples = sampler.stop()
    server.stop()
    stored = len(stored_events(data_dir / "var"))
    started = min(r[0] for r in results)
    finished = max(r[1] for r in results)
    total = sum(r[3] for r in results)
    if not all(r[2] for r in results) or stored != total:
        raise SystemExit(f"lost events: {total} acknowledged, {stored} stored")
    seconds = finished - started
    return Run(
        clients=clients,
        batch=batch,
        events=total,
        seconds=round(seconds, 2),
        events_per_second=round(total / seconds),
        stored=stored,
        rss_start_mb=round(samples[0], 1),
        rss_max_mb=round(max(samples), 1),
        rss_end_mb=round(samples[-1], 1),
        rss_samples_mb=[round(s, 1) for s in samples],
    )


def latency(rate: float, clients: int, batch: int, seconds: float, work: Path) -> dict[str, float]:
    """Return p50 and p99 acknowledgement latency at a paced total rate."""
    data_dir = Path(tempfile.mkdtemp(dir=work))
    with ServerProcess(data_dir / "var") as server:
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [
            ctx.Process(
                target=latency_client, args=(server.target, batch, rate / clients, seconds, out)
            )
            for _ in range(clients)
        ]
        for p in procs:
            p.start()
        samples = sorted(x for _ in procs for x in out.get(timeout=seconds + 600))
        for p in procs:
            p.join()
    return {
        "rate_events_per_second": round(rate),
        "requests": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 1),
    }


def direct_insert_rate(events: int, work: Path) -> float:
    """Return events/s of bulk inserts of the same kind of rows straight into the store."""
    from uptake_server.model import EVENT_COLUMNS, EventColumns
    from uptake_server.store import ClickHouseStore, SchemaContext
    from uptake_server.store.dsn import parse_dsn

    target, _ = parse_dsn(f"chdb://{tempfile.mkdtemp(dir=work)}/store")
    store = ClickHouseStore(target)
    store.migrate(SchemaContext())
    now = int(time.time() * 1000)
    chunk = 50_000
    columns = EventColumns(
        event_id=[os.urandom(16) for _ in range(chunk)],
        occurred_at=[now - i for i in range(chunk)],
        received_at=[now] * chunk,
        tool=["wiki" if i % 3 else "chat" for i in range(chunk)],
        action=[ACTIONS[i % len(ACTIONS)] for i in range(chunk)],
        user_id=[(i % 20_000).to_bytes(16, "big") for i in range(chunk)],
        org_unit=[ORG_UNITS[i % len(ORG_UNITS)] for i in range(chunk)],
        feature=["editor"] * chunk,
        client=["uptake-python/0.1.0"] * chunk,
        property_keys=[[] for _ in range(chunk)],
        property_values=[[] for _ in range(chunk)],
    )
    client = store.client("writer")
    names = [n for n, _ in EVENT_COLUMNS]
    types = [t for _, t in EVENT_COLUMNS]
    started = time.perf_counter()
    done = 0
    while done < events:
        columns.event_id = [os.urandom(16) for _ in range(chunk)]
        client.insert(
            "events",
            columns.columns(),
            column_names=names,
            column_type_names=types,
            column_oriented=True,
        )
        done += chunk
    rate = done / (time.perf_counter() - started)
    store.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one configuration only")
    parser.add_argument("--events", type=int, default=200_000, help="events per configuration")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "ingest.json"))
    args = parser.parse_args()
    console = Console()
    matrix = [(2, 500)] if args.quick else [(1, 500), (2, 500), (4, 500), (2, 100), (2, 2000)]
    with tempfile.TemporaryDirectory(prefix="uptake-bench-") as tmp:
        work = Path(tmp)
        console.print("measuring the direct bulk-insert limit ...")
        limit = direct_insert_rate(args.events, work)
        runs = []
        for clients, batch in matrix:
            console.print(f"end to end: {clients} SDK client process(es), batch {batch} ...")
            runs.append(end_to_end(clients, batch, args.events // clients, work))
        best = max(runs, key=lambda r: r.events_per_second)
        console.print(
            f"latency at half the best rate ({best.events_per_second / 2:,.0f} events/s) ..."
        )
        lat = latency(best.events_per_second / 2, 2, 500, args.latency_seconds, work)
    table = Table(
        title=f"Uptake ingestion, {os.cpu_count()} cores, one server process, embedded store"
    )
    for column in ("clients", "batch", "events", "seconds", "events/s", "% of limit", "RSS max MB"):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(
            str(r.clients),
            str(r.batch),
            f"{r.events:,}",
            f"{r.seconds:.1f}",
            f"{r.events_per_second:,}",
            f"{100 * r.events_per_second / limit:.0f}%",
            f"{r.rss_max_mb:.0f}",
        )
    console.print(table)
    console.print(f"direct bulk insert limit: {limit:,.0f} events/s")
    console.print(
        f"acknowledgement latency at {lat['rate_events_per_second']:,} events/s: "
        f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms ({lat['requests']} requests)"
    )
    result = {
        "cores": os.cpu_count(),
        "direct_insert_events_per_second": round(limit),
        "runs": [asdict(r) for r in runs],
        "best_events_per_second": best.events_per_second,
        "ratio_to_limit": round(best.events_per_second / limit, 3),
        "latency_at_half_rate": lat,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
