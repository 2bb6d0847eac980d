"""Measure the gRPC server modes: sync (thread pool) against aio, on the ingest hot path.

Both servers run the real validation and pseudonymisation of 500-event batches
and answer without storing (the store costs the same in both modes). Clients
are separate processes on loopback, so client work does not share the server's
GIL. Prints requests/s and events/s for each mode and concurrency.

    .venv/bin/python bench/grpc_modes.py [--seconds 5] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time
from concurrent import futures

import grpc
from rich.console import Console
from rich.table import Table

from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.ingest.columns import incoming
from uptake_server.ingest.pseudonym import Pseudonymiser
from uptake_server.ingest.validation import Limits, validate_events

KEY = b"bench-key-0123456789abcdef"


def handle(
    request: ingest_pb2.IngestRequest, pseudonymise: Pseudonymiser
) -> ingest_pb2.IngestResponse:
    result = validate_events(
        incoming(request),
        batch_id=request.batch_id,
        now_ms=time.time_ns() // 1_000_000,
        limits=Limits(),
        pseudonymise=pseudonymise,
    )
    return ingest_pb2.IngestResponse(accepted=len(result.events), rejected=len(result.rejections))


class SyncServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self) -> None:
        self.p = Pseudonymiser(KEY)

    def Ingest(self, request, context):  # type: ignore[no-untyped-def]
        return handle(request, self.p)


class AioServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self) -> None:
        self.p = Pseudonymiser(KEY)

    async def Ingest(self, request, context):  # type: ignore[no-untyped-def]
        return handle(request, self.p)


def run_sync(port_queue: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(SyncServicer(), server)
    port_queue.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(None)


def run_aio(port_queue: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(AioServicer(), server)
        port_queue.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.stop(None)

    asyncio.run(main())


def client(target: str, batch: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    now = int(time.time() * 1000)
    request = ingest_pb2.IngestRequest(
        columns=ingest_pb2.Columns(
            event_id=[os.urandom(16) for _ in range(batch)],
            occurred_at_ms=[now] * batch,
            tool=["wiki"] * batch,
            action=["view"] * batch,
            user_id=[f"user-{i}" for i in range(batch)],
            org_unit=["sales"] * batch,
        )
    )
    with grpc.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        stub.Ingest(request)
        done = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            stub.Ingest(request)
            done += 1
    out.put(done)


def measure(mode: str, clients: int, batch: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    server = ctx.Process(target=run_sync if mode == "sync" else run_aio, args=(ports, stop))
    server.start()
    target = f"127.0.0.1:{ports.get(timeout=30)}"
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=client, args=(target, batch, seconds, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    stop.set()
    server.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    table = Table(title=f"gRPC server modes, {args.batch}-event batches, {os.cpu_count()} cores")
    for column in ("mode", "client processes", "requests/s", "events/s"):
        table.add_column(column, justify="right")
    for clients in (1, 2, 4):
        for mode in ("sync", "aio"):
            rate = measure(mode, clients, args.batch, args.seconds)
            table.add_row(mode, str(clients), f"{rate:,.0f}", f"{rate * args.batch:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
