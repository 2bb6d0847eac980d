"""The chart's gRPC health check script, run against a real health server on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.chart import CHART

SCRIPT = CHART / "files" / "health_check.py"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    """Serve grpc.health.v1 on a free loopback port; yield the port and the servicer."""
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None).wait()


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_serving_passes_and_not_serving_fails(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    servicer.set("", SERVING)
    servicer.set("uptake.v1.IngestService", NOT_SERVING)
    ok = run_check(f"127.0.0.1:{port}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == f"127.0.0.1:{port} (server): SERVING"
    down = run_check(f"dns:///127.0.0.1:{port}", "uptake.v1.IngestService")
    assert down.returncode == 1
    assert down.stdout.strip() == f"dns:///127.0.0.1:{port} uptake.v1.IngestService: NOT_SERVING"


def test_unknown_service_and_usage_errors_fail(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, _ = health_server
    unknown = run_check(f"127.0.0.1:{port}", "no.such.Service")
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stdout
    usage = run_check()
    assert usage.returncode == 1
    assert "usage:" in usage.stderr
