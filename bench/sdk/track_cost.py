"""Measure what one track() call costs the caller's thread: Uptake, PostHog and Segment.

Each SDK sends to a local sink in another process (gRPC for Uptake, HTTP for the
others), so its background worker does real work while the calls are timed. Calls
come in bursts with short pauses, as in an application, so queues drain and the
workers compete with the caller for the GIL. Prints median and p99 per call.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table

Call = Callable[[str], object]


class DropCounter(logging.Handler):
    """Count the log records in which an SDK says it dropped an event for a full queue."""

    def __init__(self) -> None:
        super().__init__()
        self.drops = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count queue-full messages (PostHog and Segment log one per dropped event)."""
        message = record.getMessage()
        if "queue is full" in message or "queue_full" in message:
            self.drops += 1


def measure(call: Call, *, calls: int, burst: int, pause: float) -> list[int]:
    """Time each call in nanoseconds."""
    users = [f"user-{i % 1000}" for i in range(calls)]
    clock = time.perf_counter_ns
    samples = [0] * calls
    gc.collect()
    for i, user in enumerate(users):
        started = clock()
        call(user)
        samples[i] = clock() - started
        if i % burst == burst - 1:
            time.sleep(pause)
    return samples


def percentile(samples: list[int], fraction: float) -> float:
    """Return a percentile in microseconds."""
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] / 1000


def uptake_calls(grpc_port: int) -> tuple[list[tuple[str, Call]], Callable[[], None]]:
    """Return Uptake's calls to time and how to close the client."""
    import uptake

    client = uptake.Client(f"127.0.0.1:{grpc_port}")
    props = {"space": "eng", "lang": "en"}

    def plain(user: str) -> None:
        client.track(user, "page_edit", tool="wiki", org_unit="sales")

    def with_properties(user: str) -> None:
        client.track(user, "page_edit", tool="wiki", org_unit="sales", properties=props)

    def close() -> None:
        assert client.close(10), client.stats()

    return [
        (f"uptake {uptake.__version__} track()", plain),
        (f"uptake {uptake.__version__} track(properties=…)", with_properties),
    ], close


def posthog_calls(http_port: int) -> tuple[list[tuple[str, Call]], Callable[[], None]]:
    """Return PostHog's call to time and how to shut it down."""
    from posthog import Posthog

    client = Posthog("phc_bench", host=f"http://127.0.0.1:{http_port}")
    props = {"tool": "wiki", "org_unit": "sales", "space": "eng", "lang": "en"}

    def capture(user: str) -> None:
        client.capture("page_edit", distinct_id=user, properties=props)

    return [(f"posthog {version('posthog')} capture()", capture)], client.shutdown


def segment_calls(http_port: int) -> tuple[list[tuple[str, Call]], Callable[[], None]]:
    """Return Segment's call to time and how to shut it down."""
    from segment.analytics import Client

    client = Client("bench-write-key", host=f"http://127.0.0.1:{http_port}")
    props = {"tool": "wiki", "org_unit": "sales", "space": "eng", "lang": "en"}

    def track(user: str) -> None:
        client.track(user_id=user, event="page_edit", properties=props)

    def close() -> None:
        client.flush()
        client.join()

    name = f"segment-analytics-python {version('segment-analytics-python')} track()"
    return [(name, track)], close


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per SDK")
    parser.add_argument("--burst", type=int, default=500, help="calls between pauses")
    parser.add_argument("--pause", type=float, default=0.1, help="pause in seconds")
    args = parser.parse_args()
    sink = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sink.py"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        grpc_port, http_port = (int(p) for p in sink.stdout.readline().split())
        rows = []
        counter = DropCounter()
        logging.getLogger().addHandler(counter)
        logging.getLogger().setLevel(logging.WARNING)
        for factory, port in (
            (uptake_calls, grpc_port),
            (posthog_calls, http_port),
            (segment_calls, http_port),
        ):
            calls, close = factory(port)
            for name, call in calls:
                measure(call, calls=1000, burst=args.burst, pause=args.pause)  # warm up
                counter.drops = 0
                samples = measure(call, calls=args.calls, burst=args.burst, pause=args.pause)
                rows.append((name, samples, counter.drops))
            close()
        timer = measure(lambda user: None, calls=args.calls, burst=args.burst, pause=0)
    finally:
        sink.terminate()
        sink.wait(10)
    table = Table(title=f"Cost of one call in the caller's thread ({args.calls:,} calls each)")
    for column in ("SDK call", "median µs", "p99 µs", "mean µs", "drops logged"):
        table.add_column(column, justify="left" if column == "SDK call" else "right")
    for name, samples, drops in [*rows, ("(timer overhead, included above)", timer, 0)]:
        table.add_row(
            name,
            f"{percentile(samples, 0.5):.2f}",
            f"{percentile(samples, 0.99):.2f}",
            f"{statistics.fmean(samples) / 1000:.2f}",
            f"{drops:,}",
        )
    Console(width=110).print(table)


if __name__ == "__main__":
    main()
