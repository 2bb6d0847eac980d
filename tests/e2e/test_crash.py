"""Process faults: SIGKILL while clients stream loses nothing acknowledged; SIGTERM drains."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from tests.e2e.acknowledged import Ledger, Producers
from tests.support.servers import ServerProcess, stored_events
from uptake.v1 import ingest_pb2, ingest_pb2_grpc
from uptake_server.security.keyfile import KeyFile


def test_sigkill_while_clients_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.yaml"
    key, _ = KeyFile(keys, setting="UPTAKE_API_KEYS_FILE").create(name="wiki", tools=["wiki"])
    data_dir = tmp_path / "var"
    ledger = Ledger()
    with ServerProcess(data_dir, extra_args=["--api-keys-file", str(keys)]) as server:
        producers = Producers(server.target, ledger, clients=3, api_key=key)
        producers.start()
        try:
            ledger.wait_for(3_000)
            server.kill()  # SIGKILL: no drain, no flush, mid-insert if it happens to be
            at_kill = ledger.count()
            time.sleep(0.5)
            server.start()
            ledger.wait_for(at_kill + 3_000)
        finally:
            stats = producers.finish()
        assert server.stop() == 0
    tracked = sum(producers.tracked)
    stored = Counter(e["event_id"] for e in stored_events(data_dir))
    acknowledged = {i.hex() for i in ledger.acknowledged}
    assert ledger.failures["UNAVAILABLE"] > 0, "no send failed: the kill missed the stream"
    assert not [i for i in acknowledged if stored[i] != 1], "acknowledged, not stored once"
    assert max(stored.values()) == 1, "an event is stored twice"
    # The clients recovered by themselves: everything tracked was delivered in the end.
    assert sum(s.delivered for s in stats) == tracked
    assert len(stored) == tracked
    # Neither the key nor a raw user id reached the server's output.
    output = server.output()
    assert key not in output and "@example.com" not in output
    assert f"API keys from {keys}" in output


def event(n: int) -> ingest_pb2.Event:
    now = int(time.time() * 1000)
    return ingest_pb2.Event(
        event_id=os.urandom(16), occurred_at_ms=now, tool="wiki", action="view", user_id=f"u{n}"
    )


def test_sigterm_answers_the_requests_in_flight_before_exit(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    # Each request waits about a second for its group commit: SIGTERM arrives mid-wait.
    server = ServerProcess(data_dir, extra_args=["--commit-max-delay-ms", "1500"])
    batches = [[event(n) for n in range(20)] for _ in range(6)]
    with server, grpc.insecure_channel(server.target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        def send(events: list[ingest_pb2.Event]) -> int:
            return int(stub.Ingest(ingest_pb2.IngestRequest(events=events), timeout=30).accepted)

        with ThreadPoolExecutor(len(batches)) as pool:
            answers = [pool.submit(send, batch) for batch in batches]
            time.sleep(0.5)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            accepted = [answer.result() for answer in answers]
        assert server.stop() == 0
    assert accepted == [20] * len(batches)
    stored = {e["event_id"] for e in stored_events(data_dir)}
    assert stored == {e.event_id.hex() for batch in batches for e in batch}
    assert "uptake-server: stopped" in server.output()
    assert "OPEN: no API keys, anyone who reaches the port may send" in server.output()
