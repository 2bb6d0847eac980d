"""The load generators of `make bench`: SDK clients and paced raw gRPC clients.

Each runs in a process of its own (multiprocessing, spawn) and reports through a queue.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

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
) -> None:
    """Send `batch`-event requests at `rate` events/s for `seconds`; report latencies."""
    import grpc

    from uptake.v1 import ingest_pb2, ingest_pb2_grpc

    now = int(time.time() * 1000)
    # attempt=1 marks a first send, as the SDK does: no duplicate lookup needed.
    # Column-wise, as the SDK sends.
    request = ingest_pb2.IngestRequest(
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
    latencies = []
    with grpc.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        next_send = time.perf_counter()
        end = next_send + seconds
        while next_send < end:
            delay = next_send - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            del request.columns.event_id[:]
            request.columns.event_id.extend([os.urandom(16) for _ in range(batch)])
            started = time.perf_counter()
            stub.Ingest(request, timeout=30)
            latencies.append(time.perf_counter() - started)
            next_send += interval
    out.put(latencies)
