"""The load generators of `make bench`: SDK clients and open-loop raw gRPC clients.

Each runs in a process of its own (multiprocessing, spawn) and reports through a queue.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

ORG_UNITS = [f"unit-{i:02d}" for i in range(40)]
ACTIONS = ["page_view", "page_edit", "comment", "search", "share"]


def sdk_client(
    target: str,
    events: int,
    batch: int,
    seed: int,
    out: mp.Queue,  # type: ignore[type-arg]
    seconds: float = 0.0,
) -> None:
    """Track `events` events (or, with `seconds`, as many as fit) with one SDK client.

    A timed client blocks on a full queue (`on_full="block"`) instead of growing
    it, so it runs at the rate the server acknowledges.
    """
    import uptake

    if seconds:
        client = uptake.Client(
            target,
            batch_size=batch,
            max_queue_size=4 * batch,
            on_full="block",
            block_timeout=60,
            strict=False,
        )
    else:
        client = uptake.Client(target, batch_size=batch, max_queue_size=events + 1, strict=False)
    started = time.perf_counter()
    deadline = started + seconds
    i = 0
    while (i < events) if not seconds else (i % 1000 or time.perf_counter() < deadline):
        n = seed * 1_000_003 + i
        client.track(
            f"user-{n % 20_000}",
            ACTIONS[n % len(ACTIONS)],
            tool="wiki" if n % 3 else "chat",
            org_unit=ORG_UNITS[n % len(ORG_UNITS)],
            feature="editor",
        )
        i += 1
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
    phase: float = 0.0,
) -> None:
    """Send `batch`-event requests at `rate` events/s for `seconds`; report latencies.

    Open loop: each request goes out at its scheduled time whether or not the ones
    before it are answered, so the rate holds whatever the latency, and a latency
    counts from the scheduled time (a send held up on this side counts too).
    `phase` (a fraction of the interval) delays the schedule, so several clients
    spread their requests evenly instead of sending them in pairs.
    Reports the latencies in seconds and the events/s acknowledged.
    """
    import threading

    import grpc

    from uptake.v1 import ingest_pb2, ingest_pb2_grpc

    now = int(time.time() * 1000)
    # attempt=1 marks a first send, as the SDK does: no duplicate lookup needed.
    # Column-wise, as the SDK sends.
    template = ingest_pb2.IngestRequest(
        attempt=1,
        columns=ingest_pb2.Columns(
            occurred_at_ms=[now] * batch,
            tool=["wiki"] * batch,
            action=[ACTIONS[i % len(ACTIONS)] for i in range(batch)],
            user_id=[f"user-{i}" for i in range(batch)],
            org_unit=[ORG_UNITS[i % len(ORG_UNITS)] for i in range(batch)],
        ),
    )
    interval = batch / rate
    sends = max(1, round(seconds / interval))
    latencies: list[float] = []
    answered: list[float] = []
    lock = threading.Lock()

    def recorder(scheduled: float) -> Callable[[Any], None]:
        def record(future: Any) -> None:
            finished = time.perf_counter()
            if future.exception() is None:
                with lock:
                    latencies.append(finished - scheduled)
                    answered.append(finished)

        return record

    with grpc.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        start = time.perf_counter() + phase * interval
        futures = []
        for k in range(sends):
            request = ingest_pb2.IngestRequest()
            request.CopyFrom(template)
            request.columns.event_id.extend([os.urandom(16) for _ in range(batch)])
            scheduled = start + k * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            future = stub.Ingest.future(request, timeout=30)
            future.add_done_callback(recorder(scheduled))
            futures.append(future)
        for future in futures:
            future.result()  # any failed request fails the run
    with lock:
        acknowledged = len(latencies) * batch / (max(answered) - start)
    out.put((latencies, acknowledged))
