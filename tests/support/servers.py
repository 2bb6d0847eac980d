"""Run the real Uptake server for tests: in a subprocess, on loopback, on a private data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from uptake_server.config import load_settings
from uptake_server.inspection import fetch_events

START_TIMEOUT_SECONDS = 60.0
# The readiness check: SERVING once the store answers.
INGEST_SERVICE = "uptake.v1.IngestService"


def free_port() -> int:
    """Return a loopback port that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_status(target: str, *, service: str = "", timeout: float = 2.0) -> int | None:
    """Return the health status of a server, or None when it does not answer."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return None
        return int(reply.status)


class ServerProcess:
    """`uptake-server serve --dev` in a subprocess; restartable on the same dir and port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.extra_env = dict(extra_env or {})
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self._starts = 0

    @property
    def target(self) -> str:
        """Return the gRPC target, host:port."""
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Return the URL of the metrics endpoint."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        """Return the command line that starts the server."""
        return [
            sys.executable,
            "-m",
            "uptake_server",
            "serve",
            "--dev",
            "--data-dir",
            str(self.data_dir),
            "--grpc-listen",
            self.target,
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--health-interval-seconds",
            "0.5",
            *self.extra_args,
        ]

    def start(self, *, wait: bool = True) -> None:
        """Start the server and (by default) wait until its health is SERVING."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}
        env.update(self.extra_env)
        self._starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self._starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        if wait:
            self.wait_serving()

    def wait_serving(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until the ingest service is SERVING; raise with the log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"the server exited during start:\n{self.output()}")
            status = health_status(self.target, service=INGEST_SERVICE, timeout=1.0)
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the server was not SERVING after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        """Return everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send a signal, wait for the exit and return the exit status."""
        if self.process is None:
            raise RuntimeError("the server was not started")
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """Kill the server with SIGKILL (no chance to clean up)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop()


def stored_events(data_dir: Path, *, failed: bool = False) -> list[dict[str, Any]]:
    """Return every stored (or failed) event of a data dir no server holds right now."""
    settings = load_settings({"data_dir": str(data_dir), "dev": True}, environ={})
    rows = fetch_events(settings, failed=failed, limit=1_000_000_000)
    for row in rows:
        if "occurred_at" in row:
            row["occurred_at_ms"] = _epoch_ms(row["occurred_at"])
    return rows


def _epoch_ms(value: Any) -> int:
    # The store returns naive UTC datetimes.
    return int(value.replace(tzinfo=UTC).timestamp() * 1000)
