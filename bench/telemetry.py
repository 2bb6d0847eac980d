"""Measure what tracing costs on the ingest path, and the two ways to make the request span.

1. The ingest path: 500-event requests through the real gRPC server,
   interceptors, validation, pseudonymisation and group commit, over a store
   that stores nothing (an insert's latency would hide the difference), tracing
   off against tracing on (every request sampled, 4 spans each, a batch
   processor and an exporter that drops the spans, so no collector's work is
   counted). The two servers get the same requests alternately, so drift hits
   both alike. Prints the median and p90 latency and the process CPU time per
   request (client and server share the process).
2. The request span alone: a trivial handler behind Uptake's RequestInterceptor
   (off and on) and behind opentelemetry-instrumentation-grpc's server
   interceptor (when installed), against no interceptor at all.

    .venv/bin/python bench/telemetry.py [--requests 1000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.app import create_server
from uptake_server.config import load_settings
from uptake_server.ingest.pseudonym import Pseudonymiser
from uptake_server.ingest.servicer import IngestServicer
from uptake_server.ingest.validation import Limits
from uptake_server.metrics import ServiceMetrics
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.store.group_commit import GroupCommitter
from uptake_server.telemetry import Telemetry
from uptake_server.telemetry.interceptor import RequestInterceptor

INGEST = "/uptake.v1.IngestService/Ingest"


class DropExporter(SpanExporter):
    """Accept spans and keep nothing: the SDK's work without a collector's."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def provider(sampler: Sampler | None = None) -> tuple[TracerProvider, DropExporter]:
    exporter = DropExporter()
    traced = TracerProvider(sampler=sampler)
    traced.add_span_processor(BatchSpanProcessor(exporter))
    return traced, exporter


def batch(size: int, n: int) -> bytes:
    """Return a request of `size` new events, column-wise as the SDK sends them."""
    now = int(time.time() * 1000)
    columns = ingest_pb2.Columns(
        event_id=[os.urandom(16) for _ in range(size)],
        occurred_at_ms=[now - 1000] * size,
        tool=["wiki"] * size,
        action=["page_edit"] * size,
        user_id=[f"user-{i % 97}" for i in range(size)],
        org_unit=["sales"] * size,
        property_counts=[1] * size,
        property_keys=["plan"] * size,
        property_values=["pro"] * size,
    )
    return ingest_pb2.IngestRequest(batch_id=f"bench-{n}", columns=columns).SerializeToString()


def timed_calls(target: str, requests: list[bytes]) -> tuple[list[float], float]:
    """Send requests one after another; return each latency and the CPU time per request."""
    latencies = []
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INGEST)
        call(requests[0], timeout=30)  # connect
        cpu = time.process_time()
        for raw in requests[1:]:
            started = time.perf_counter()
            call(raw, timeout=30)
            latencies.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
    return latencies, cpu / (len(requests) - 1)


class NullStore:
    """Store nothing, at once: the store's latency would hide what tracing costs."""

    def insert(self, events: EventColumns, failed: FailedColumns, **_: Any) -> set[bytes]:
        return set()


def ingest_server(telemetry: Telemetry) -> tuple[grpc.Server, GroupCommitter, str]:
    """Start the real gRPC server, interceptor, servicer and group commit over NullStore."""
    settings = load_settings(
        {"dev": True, "grpc_listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"}, environ={}
    )
    metrics = ServiceMetrics(registry=CollectorRegistry())
    committer = GroupCommitter(
        NullStore(),
        max_rows=50_000,
        max_delay_seconds=0,
        max_pending=200_000,
        metrics=metrics,
        tracer=telemetry.tracer,
    )
    servicer = IngestServicer(
        committer=committer,
        pseudonymise=Pseudonymiser(b"bench-key-0123456789abcdef"),
        limits=Limits(),
        max_events_per_request=10_000,
        metrics=metrics,
        tracer=telemetry.tracer,
    )
    server, port = create_server(
        settings, servicer=servicer, health_servicer=health.HealthServicer(), telemetry=telemetry
    )
    server.start()
    return server, committer, f"127.0.0.1:{port}"


def ingest_path(requests: int, size: int) -> dict[str, tuple[list[float], float]]:
    """Send the same requests to a server with tracing off and one with it on, alternately."""
    traced, exporter = provider()
    sampled, _ = provider(ParentBased(TraceIdRatioBased(0.1)))
    modes = {
        "off": Telemetry(),
        "on, every request sampled": Telemetry.for_provider(traced),
        "on, 10% sampled": Telemetry.for_provider(sampled),
    }
    servers = {mode: ingest_server(telemetry) for mode, telemetry in modes.items()}
    results: dict[str, tuple[list[float], float]] = {}
    try:
        channels = {m: grpc.insecure_channel(target) for m, (_, _, target) in servers.items()}
        calls: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {
            m: c.unary_unary(INGEST) for m, c in channels.items()
        }
        latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu = dict.fromkeys(modes, 0.0)
        for n in range(requests + 20):
            payload = batch(size, n)  # new event ids: every request is stored, none a duplicate
            for mode, call in calls.items():
                started, process = time.perf_counter(), time.process_time()
                call(payload, timeout=30)
                if n >= 20:  # warmed up
                    latencies[mode].append(time.perf_counter() - started)
                    cpu[mode] += time.process_time() - process
        for mode in modes:
            results[mode] = (latencies[mode], cpu[mode] / requests)
        for channel in channels.values():
            channel.close()
    finally:
        for server, committer, _ in servers.values():
            server.stop(None).wait()
            committer.close()
        traced.shutdown()
        sampled.shutdown()
    assert exporter.exported == 4 * (requests + 20), exporter.exported
    return results


class Fixed(ingest_pb2_grpc.IngestServiceServicer):
    def Ingest(self, request: Any, context: Any) -> ingest_pb2.IngestResponse:
        return ingest_pb2.IngestResponse(accepted=len(request.events))


def request_span_only(calls: int) -> dict[str, list[float]]:
    modes: dict[str, Callable[[TracerProvider], list[grpc.ServerInterceptor]]] = {
        "no interceptor": lambda p: [],
        "RequestInterceptor, tracing off": lambda p: [RequestInterceptor(tracer=None)],
        "RequestInterceptor, tracing on": lambda p: [
            RequestInterceptor(tracer=Telemetry.for_provider(p).tracer)
        ],
    }
    try:
        from opentelemetry.instrumentation.grpc import server_interceptor

        modes["instrumentation-grpc interceptor, on"] = lambda p: [
            server_interceptor(tracer_provider=p)  # type: ignore[no-untyped-call]
        ]
    except ImportError:
        print("opentelemetry-instrumentation-grpc is not installed: its row is left out")
    payload = batch(500, 0)
    results: dict[str, list[float]] = {}
    for name, interceptors in modes.items():
        traced, _ = provider()
        server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=interceptors(traced))
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(Fixed(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            latencies, _ = timed_calls(f"127.0.0.1:{port}", [payload] * (calls + 1))
        finally:
            server.stop(None).wait()
            traced.shutdown()
        results[name] = latencies
    return results


def micros(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100)[int(q) - 1] * 1e6
        if q != 50
        else (statistics.median(values) * 1e6)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per mode")
    parser.add_argument("--calls", type=int, default=2000, help="calls per interceptor mode")
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    args = parser.parse_args()
    console = Console()
    results = ingest_path(args.requests, args.batch)
    table = Table(title=f"Ingest of {args.batch}-event requests, store left out, one client")
    for column in ("tracing", "median ms", "p90 ms", "CPU ms per request"):
        table.add_column(column, justify="right")
    for mode, (latencies, cpu) in results.items():
        table.add_row(
            mode,
            f"{micros(latencies, 50) / 1000:.3f}",
            f"{micros(latencies, 90) / 1000:.3f}",
            f"{cpu * 1000:.3f}",
        )
    console.print(table)
    off = statistics.median(results["off"][0])
    for mode in list(results)[1:]:
        added = (statistics.median(results[mode][0]) - off) * 1e6
        console.print(f"tracing {mode}: {added:+.0f} µs on the median request")
    spans = request_span_only(args.calls)
    table = Table(title="The request span alone: 500-event request, trivial handler")
    for column in ("server interceptor", "median µs", "p90 µs", "added median µs"):
        table.add_column(column, justify="right")
    base = micros(spans["no interceptor"], 50)
    for name, latencies in spans.items():
        median = micros(latencies, 50)
        table.add_row(
            name, f"{median:.0f}", f"{micros(latencies, 90):.0f}", f"{median - base:+.0f}"
        )
    console.print(table)


if __name__ == "__main__":
    main()
