"""The server as a process: restart, graceful shutdown, one process per data directory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.servers import ServerProcess, free_port, stored_events
from uptake.v1 import ingest_pb2, ingest_pb2_grpc


def send(target: str, n: int, *, tool: str = "wiki") -> list[bytes]:
    ids = [os.urandom(16) for _ in range(n)]
    now = int(time.time() * 1000)
    events = [
        ingest_pb2.Event(
            event_id=i, occurred_at_ms=now, tool=tool, action="view", user_id=f"user-{k}"
        )
        for k, i in enumerate(ids)
    ]
    with grpc.insecure_channel(target) as channel:
        reply = ingest_pb2_grpc.IngestServiceStub(channel).Ingest(
            ingest_pb2.IngestRequest(events=events), timeout=30
        )
    assert reply.accepted == n
    return ids


def test_events_survive_a_restart_on_the_same_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    with ServerProcess(data_dir) as server:
        before = send(server.target, 30)
        assert server.stop() == 0
        server.start()
        after = send(server.target, 20, tool="chat")
        assert server.stop() == 0
    stored = {e["event_id"]: e["tool"] for e in stored_events(data_dir)}
    assert stored == {i.hex(): "wiki" for i in before} | {i.hex(): "chat" for i in after}
    assert "dev mode: using the pseudonym key kept in" in server.output()


def test_health_turns_not_serving_during_shutdown_and_exit_is_clean(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "var", extra_args=["--shutdown-delay-seconds", "3"]) as server:
        assert server.process is not None
        # One channel, connected before the signal: a new connection per probe can
        # take longer than the shutdown delay on a busy machine.
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="uptake.v1.IngestService")
            assert (
                health.Check(request, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            )
            server.process.send_signal(signal.SIGTERM)
            seen = set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and server.process.poll() is None:
                with contextlib.suppress(grpc.RpcError):
                    seen.add(health.Check(request, timeout=1).status)
                time.sleep(0.05)
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen
        assert server.stop() == 0
    assert "uptake-server: stopped" in server.output()
    assert "Traceback" not in server.output()


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "var") as server:
        send(server.target, 5)
        assert server.stop(signal.SIGINT) == 0
    assert "Aborted" not in server.output()
    assert "Traceback" not in server.output()


def test_second_server_on_the_same_directory_fails_with_a_clear_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    with ServerProcess(data_dir) as first:
        second = ServerProcess(data_dir, port=free_port())
        second.start(wait=False)
        assert second.process is not None
        code = second.process.wait(60)
        assert code == 1
        expected = f"the data directory {data_dir.resolve() / 'store'} is in use by another"
        assert expected in second.output()
        assert "Traceback" not in second.output()
        # The first server is unharmed.
        send(first.target, 3)


def test_serve_without_a_key_outside_dev_mode_names_the_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}
    result = subprocess.run(
        [sys.executable, "-m", "uptake_server", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no pseudonym key: set UPTAKE_PSEUDONYM_KEY" in result.stderr


def test_inspecting_a_store_held_by_the_server_explains_what_to_do(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "var") as server:
        result = subprocess.run(
            [sys.executable, "-m", "uptake_server", "events", "--data-dir", str(server.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "is in use by another Uptake process" in result.stderr
    assert "stop the server to inspect its events" in result.stderr
