"""Soak: several SDK clients against one server on loopback for a bounded time.

Each client is a process with one `uptake.Client` (API key, background worker,
default batching) tracking events at a steady rate. The server is a real
`uptake-server serve` process on a fresh embedded store, with authentication on.
Reports throughput, acknowledgement latency (p50, p99, max, measured per request
in the clients), server memory over time with its trend after warm-up, and loss:
events tracked against events stored (and stored twice, which must be zero).

    .venv/bin/python bench/soak/soak.py --seconds 120 --clients 4 --rate 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.memory import rss_mb  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402

SAMPLE_SECONDS = 5.0


class TimedTransport:
    """The SDK's gRPC transport, timing every request it sends."""

    def __init__(self, options: Any, latencies: list[float], failures: dict[str, int]) -> None:
        from uptake._transport import GrpcTransport

        self._inner = GrpcTransport(options)
        self._latencies = latencies
        self._failures = failures

    def send(self, request: Any, *, timeout: float) -> Any:
        from uptake._errors import TransportError

        started = time.perf_counter()
        try:
            response = self._inner.send(request, timeout=timeout)
        except TransportError as error:
            self._failures[error.code] = self._failures.get(error.code, 0) + 1
            raise
        self._latencies.append(time.perf_counter() - started)
        return response

    def close(self) -> None:
        self._inner.close()

    def after_fork(self) -> None:
        self._inner.after_fork()


def client_process(
    target: str, key: str, number: int, rate: int, seconds: float, out: mp.Queue[dict[str, Any]]
) -> None:
    """Track `rate` events per second for `seconds`, deliver, report what happened."""
    import uptake

    latencies: list[float] = []
    failures: dict[str, int] = {}
    options = uptake.Options(target=target, api_key=key, max_queue_size=200_000)
    client = uptake.Client(
        target,
        api_key=key,
        max_queue_size=options.max_queue_size,
        transport=TimedTransport(options, latencies, failures),
    )
    tracked = 0
    started = time.monotonic()
    tick = 0.01
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) + 1
        for n in range(tracked, due):
            client.track(
                f"user-{number}-{n % 5000}",
                ("page_view", "page_edit", "comment")[n % 3],
                tool=("wiki", "chat")[n % 2],
                org_unit=f"unit-{n % 40:02d}",
                properties={"space": f"s{n % 7}"},
            )
        tracked = max(tracked, due)
        time.sleep(tick)
    delivered_in_time = client.flush(120)
    stats = client.stats()
    client.close(10)
    out.put(
        {
            "tracked": tracked,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "flushed": delivered_in_time,
            "latencies": latencies,
            "failures": failures,
        }
    )


def trend_mb_per_minute(samples: list[tuple[float, float]]) -> float:
    """Return the least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 3:
        return 0.0
    xs, ys = zip(*samples, strict=True)
    return statistics.linear_regression(xs, ys).slope * 60


@dataclass
class Figures:
    """What one soak run measured."""

    seconds: float
    clients: int
    rate_per_client: int
    tracked: int
    acknowledged: int
    dropped_by_clients: int
    stored: int
    stored_twice: int
    lost: int
    events_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    failed_requests: dict[str, int]
    rss_mb: list[tuple[float, float]]
    rss_max_mb: float
    rss_trend_mb_per_minute: float


def soak(*, seconds: float, clients: int, rate: int, warmup: float) -> Figures:
    """Run the soak and return its figures."""
    from uptake_server.config import load_settings
    from uptake_server.security.keyfile import KeyFile
    from uptake_server.store import open_store

    workdir = Path(tempfile.mkdtemp(prefix="uptake-soak-"))
    keys = workdir / "api-keys.yaml"
    key, _ = KeyFile(keys, setting="UPTAKE_API_KEYS_FILE").create(name="soak", tools=["*"])
    server = ServerProcess(workdir / "var", extra_args=["--api-keys-file", str(keys)])
    server.start()
    assert server.process is not None
    pid = server.process.pid
    context = mp.get_context("spawn")
    out: mp.Queue[dict[str, Any]] = context.Queue()
    workers = [
        context.Process(target=client_process, args=(server.target, key, n, rate, seconds, out))
        for n in range(clients)
    ]
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - started, rss_mb(pid)))
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for worker in workers:
        worker.start()
    reports = [out.get(timeout=seconds + 300) for _ in workers]
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join()
    stop.set()
    sampler.join()
    assert server.stop() == 0, server.output()[-2000:]
    store = open_store(load_settings({"data_dir": str(workdir / "var"), "dev": True}, environ={}))
    try:
        ((rows, unique),) = store.query("SELECT count(), uniqExact(event_id) FROM events")
    finally:
        store.close()
    latencies = sorted(x for r in reports for x in r["latencies"])
    centiles = statistics.quantiles(latencies, n=100)
    failures: dict[str, int] = {}
    for report in reports:
        for code, count in report["failures"].items():
            failures[code] = failures.get(code, 0) + count
    tracked = sum(r["tracked"] for r in reports)
    acknowledged = sum(r["delivered"] for r in reports)
    return Figures(
        seconds=round(elapsed, 1),
        clients=clients,
        rate_per_client=rate,
        tracked=tracked,
        acknowledged=acknowledged,
        dropped_by_clients=sum(r["dropped"] for r in reports),
        stored=int(unique),
        stored_twice=int(rows - unique),
        lost=tracked - int(unique),
        events_per_second=round(acknowledged / elapsed),
        latency_p50_ms=round(centiles[49] * 1000, 1),
        latency_p99_ms=round(centiles[98] * 1000, 1),
        latency_max_ms=round(latencies[-1] * 1000, 1),
        failed_requests=failures,
        rss_mb=[(round(t), round(m, 1)) for t, m in samples],
        rss_max_mb=round(max(m for _, m in samples), 1),
        rss_trend_mb_per_minute=round(
            # While clients track: the drain after it is a burst, not a trend.
            trend_mb_per_minute([s for s in samples if warmup <= s[0] <= seconds]),
            2,
        ),
    )


def main() -> None:
    """Parse arguments, soak, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120, help="how long clients track")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--rate", type=int, default=2000, help="events per second per client")
    parser.add_argument(
        "--warmup", type=float, help="seconds left out of the memory trend (default: half)"
    )
    parser.add_argument("--out", default="bench-results/soak.json", help="where to write JSON")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = args.seconds / 2
    figures = soak(seconds=args.seconds, clients=args.clients, rate=args.rate, warmup=args.warmup)
    print(f"soak: {figures.clients} clients x {figures.rate_per_client} events/s for "
          f"{figures.seconds} s (server with API keys, embedded store)")  # fmt: skip
    print(f"  throughput      {figures.events_per_second:,} events/s acknowledged")
    print(f"  latency         p50 {figures.latency_p50_ms} ms, p99 {figures.latency_p99_ms} ms, "
          f"max {figures.latency_max_ms} ms (per request, client side)")  # fmt: skip
    print(f"  events          {figures.tracked:,} tracked, {figures.acknowledged:,} acknowledged, "
          f"{figures.stored:,} stored, {figures.stored_twice} stored twice, "
          f"{figures.dropped_by_clients} dropped by clients")  # fmt: skip
    print(f"  loss            {figures.lost}")
    print(f"  failed requests {figures.failed_requests or 'none'} (retried by the SDK)")
    trend = figures.rss_trend_mb_per_minute
    window = f"{args.warmup:g}-{args.seconds:g} s"
    print(f"  server memory   max {figures.rss_max_mb} MiB; trend {window} {trend:+} MiB/min; "
          f"RSS (s, MiB): {figures.rss_mb}")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(asdict(figures), indent=2) + "\n")
    print(f"  written to {args.out}")
    if figures.lost or figures.stored_twice:
        sys.exit(1)


if __name__ == "__main__":
    main()
