"""The SDK against the real Uptake server in real processes: every event stored exactly once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import uptake
from tests.support.servers import ServerProcess, free_port, stored_events

pytestmark = pytest.mark.slow
FAST_RETRY: dict[str, Any] = {"retry_initial": 0.05, "retry_max": 0.5}


def stored_by(data_dir: Path, key: str) -> Counter[str]:
    """Count the stored events by the value of property `key`, checking ids are unique."""
    rows = stored_events(data_dir)
    ids = [row["event_id"] for row in rows]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    values: Counter[str] = Counter()
    for row in rows:
        properties = dict(zip(row["property_keys"], row["property_values"], strict=True))
        values[properties[key]] += 1
    return values


def run_python(script: str, *args: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Run a Python script in a new process; return the JSON lines it printed."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_server_down_at_start(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    with uptake.Client(server.target, **FAST_RETRY) as client:
        for i in range(300):
            client.track(f"user-{i}", "view", tool="wiki", properties={"n": str(i)})
        assert client.flush(1) is False  # nothing listens yet
        with server:
            assert client.flush(30)
        stats = client.stats()
    assert (stats.delivered, stats.dropped) == (300, 0)
    assert stored_by(tmp_path / "data", "n") == Counter({str(i): 1 for i in range(300)})


class Producer(threading.Thread):
    """Track `count` numbered events at a steady pace; pause() waits between requests."""

    def __init__(self, client: uptake.Client, count: int) -> None:
        super().__init__()
        self.client = client
        self.count = count
        self.running = threading.Event()
        self.running.set()

    def run(self) -> None:
        for i in range(self.count):
            self.running.wait()
            self.client.track(f"user-{i % 97}", "view", tool="wiki", properties={"n": str(i)})
            if i % 10 == 0:
                time.sleep(0.002)


@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
def test_server_killed_mid_stream_and_restarted(tmp_path: Path, spool: bool) -> None:
    options: dict[str, Any] = dict(FAST_RETRY, batch_size=50, flush_interval=0.05)
    if spool:
        options["spool_dir"] = str(tmp_path / "spool")
    tracked = 3000
    with (
        ServerProcess(tmp_path / "data") as server,
        uptake.Client(server.target, **options) as client,
    ):
        producer = Producer(client, tracked)
        producer.start()
        time.sleep(0.3)
        # Kill between two requests: the application keeps tracking while the
        # server is gone (see below for a kill during a request).
        producer.running.clear()
        assert client.flush(10)
        server.kill()
        producer.running.set()
        time.sleep(0.5)
        server.start()
        producer.join()
        assert client.flush(60)
        stats = client.stats()
        server.stop()
    # The queue had room for everything, so nothing was dropped.
    assert stats.dropped == 0
    assert stored_by(tmp_path / "data", "n") == Counter({str(i): 1 for i in range(tracked)})


def test_server_killed_during_a_request(tmp_path: Path) -> None:
    # Each commit takes 300 ms, so the kill lands while a request is in flight; its
    # events may or may not have been committed, and the client sends them again.
    env = {"UPTAKE_COMMIT_MAX_DELAY_MS": "300"}
    tracked = 1000
    with (
        ServerProcess(tmp_path / "data", extra_env=env) as server,
        uptake.Client(server.target, batch_size=50, flush_interval=0.05, **FAST_RETRY) as client,
    ):
        producer = Producer(client, tracked)
        producer.start()
        time.sleep(0.5)
        server.kill()
        time.sleep(0.5)
        server.start()
        producer.join()
        assert client.flush(60)
        server.stop()
    stored = Counter(
        dict(zip(row["property_keys"], row["property_values"], strict=True))["n"]
        for row in stored_events(tmp_path / "data")
    )
    # Nothing is lost, and nothing is stored twice: a server that died between
    # committing a batch and answering recognises the resent events after restart.
    assert stored == Counter({str(i): 1 for i in range(tracked)})


def test_unavailable_with_retry_info_from_an_overloaded_server(tmp_path: Path) -> None:
    # One pending event is the limit: concurrent requests get UNAVAILABLE + RetryInfo.
    env = {"UPTAKE_MAX_PENDING_EVENTS": "1"}
    with ServerProcess(tmp_path / "data", extra_env=env) as server:
        clients = [
            uptake.Client(server.target, batch_size=20, flush_interval=0.01, **FAST_RETRY)
            for _ in range(4)
        ]

        def produce(n: int) -> None:
            for i in range(200):
                clients[n].track("u", "view", tool="wiki", properties={"n": f"{n}-{i}"})

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(client.close(60) for client in clients)
        with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
            metrics = response.read().decode()
        server.stop()
    unavailable = re.search(r'uptake_ingest_requests_total\{code="UNAVAILABLE"\} (\S+)', metrics)
    assert unavailable is not None and float(unavailable.group(1)) > 0
    expected = {f"{n}-{i}": 1 for n in range(4) for i in range(200)}
    assert stored_by(tmp_path / "data", "n") == Counter(expected)


def test_a_server_slower_than_the_deadline(tmp_path: Path) -> None:
    # Each commit waits 0.8 s, longer than the client's 0.3 s deadline: the first tries
    # time out and are sent again with the same event ids; a try that is in flight
    # when the commit lands gets its answer. Every event is stored once.
    env = {"UPTAKE_COMMIT_MAX_DELAY_MS": "800"}
    with ServerProcess(tmp_path / "data", extra_env=env) as server:
        failures: list[uptake.Failure] = []
        with uptake.Client(
            server.target, request_timeout=0.3, on_error=failures.append, **FAST_RETRY
        ) as client:
            for i in range(100):
                client.track("u", "view", tool="wiki", properties={"n": str(i)})
            assert client.flush(30)
            stats = client.stats()
        with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
            metrics = response.read().decode()
        server.stop()
    assert (stats.delivered, stats.dropped, failures) == (100, 0, [])
    tries = re.search(r"uptake_ingest_batch_events_count (\S+)", metrics)
    assert tries is not None and float(tries.group(1)) >= 2  # the batch arrived several times
    assert stored_by(tmp_path / "data", "n") == Counter({str(i): 1 for i in range(100)})


EXIT_SCRIPT = """
    import json, sys, uptake
    spool = sys.argv[2] if len(sys.argv) > 2 else None
    uptake.init(sys.argv[1], flush_interval=60, spool_dir=spool, atexit_timeout=5)
    for i in range(500):
        uptake.track(f"user-{i}", "view", tool="wiki", properties={"n": str(i)})
    print(json.dumps({"tracked": 500}))
    # No flush, no close: the exit hook delivers what is pending.
"""


def test_process_exit_with_pending_events(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as server:
        run_python(EXIT_SCRIPT, server.target)
        server.stop()
    assert stored_by(tmp_path / "data", "n") == Counter({str(i): 1 for i in range(500)})


def test_process_exit_with_the_server_down_keeps_events_in_the_spool(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", port=free_port())
    spool = tmp_path / "spool"
    run_python(EXIT_SCRIPT, server.target, str(spool))
    assert list(spool.glob("*.batch"))
    with server:
        replay = """
            import json, sys, uptake
            client = uptake.Client(sys.argv[1], spool_dir=sys.argv[2])
            print(json.dumps({"flushed": client.flush(30)}))
        """
        [result] = run_python(replay, server.target, str(spool))
        server.stop()
    assert result == {"flushed": True}
    assert stored_by(tmp_path / "data", "n") == Counter({str(i): 1 for i in range(500)})


FORK_SCRIPT = """
    import json, os, sys, uptake
    client = uptake.Client(sys.argv[1], flush_interval=60, batch_size=1000)
    client.track("u", "view", tool="wiki", properties={"who": "warmup"})
    assert client.flush(30)  # the parent's channel is open and used before the fork
    for i in range(100):
        client.track("u", "view", tool="wiki", properties={"who": "before"})
    pid = os.fork()
    who = "child" if pid == 0 else "parent"
    for i in range(100):
        client.track("u", "view", tool="wiki", properties={"who": who})
    if pid == 0:
        print(json.dumps({"who": who, "flushed": client.flush(30),
                          "delivered": client.stats().delivered}), flush=True)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"who": who, "flushed": client.flush(30), "child_status": status,
                      "delivered": client.stats().delivered}), flush=True)
"""


def test_fork_child_and_parent_both_track(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as server:
        results = run_python(FORK_SCRIPT, server.target)
        server.stop()
    by_who = {result["who"]: result for result in results}
    assert by_who["child"] == {"who": "child", "flushed": True, "delivered": 100}
    assert by_who["parent"]["flushed"] is True
    assert by_who["parent"]["child_status"] == 0
    assert by_who["parent"]["delivered"] == 201  # warmup, before the fork, after it
    assert stored_by(tmp_path / "data", "who") == Counter(
        {"warmup": 1, "before": 100, "parent": 100, "child": 100}
    )
