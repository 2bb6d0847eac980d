"""The offline spool: batches survive an unreachable server, a restart and each other."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import uptake
from tests.sdk.fake_server import FakeServer, ok, unavailable
from tests.support.polling import wait_for
from tests.support.servers import free_port
from uptake._event import Record
from uptake._spool import MAGIC, Spool, SpoolEntry
from uptake._stats import Counters
from uptake.v1.ingest_pb2 import Event, IngestRequest

MakeClient = Callable[..., uptake.Client]
FAST_RETRY = {"retry_initial": 0.01, "retry_max": 0.05}


def events(*names: str) -> list[Record]:
    """Return queued events with the given user ids."""
    return [
        (name.encode().ljust(16, b"."), 1772366400000, "wiki", "view", name, None, None, None)
        for name in names
    ]


def users(entry: SpoolEntry) -> list[str]:
    """Return the user ids of a spooled batch, in order."""
    return [record[4] for record in entry.events]


def test_batches_are_taken_oldest_first_and_locked(tmp_path: Path) -> None:
    counters = Counters()
    spool = Spool(str(tmp_path), max_bytes=10**6, counters=counters)
    other = Spool(str(tmp_path), max_bytes=10**6, counters=counters)
    spool.write(events("a", "b"))
    spool.write(events("c"))
    assert spool.pending() == 3
    first = spool.take()
    assert first is not None
    assert users(first) == ["a", "b"]
    second = other.take()  # the first file is locked: the other reader gets the next
    assert second is not None
    assert users(second) == ["c"]
    assert other.take() is None
    first.release()
    second.done()
    again = other.take()
    assert again is not None
    assert users(again) == ["a", "b"]
    again.done()
    assert spool.pending() == 0
    assert list(tmp_path.iterdir()) == []


def test_the_oldest_batches_are_dropped_over_the_size_limit(tmp_path: Path) -> None:
    counters = Counters()
    spool = Spool(str(tmp_path), max_bytes=200, counters=counters)
    for name in ("a", "b", "c", "d", "e", "f"):
        spool.write(events(name, name + "2"))
    entry = spool.take()
    assert entry is not None
    kept = users(entry)
    entry.release()
    assert kept != ["a", "a2"]
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) <= 200
    snapshot = counters.snapshot(queued=0, spooled=spool.pending())
    assert snapshot.spool_full == 12 - snapshot.spooled
    assert snapshot.spool_full > 0


def test_files_of_one_message_per_event_still_replay(tmp_path: Path) -> None:
    # Earlier versions spooled one Event message per event; their files stay readable.
    request = IngestRequest(
        events=[
            Event(event_id=b"a" * 16, occurred_at_ms=5, tool="wiki", action="view", user_id="a"),
            Event(
                event_id=b"b" * 16,
                occurred_at_ms=6,
                tool="chat",
                action="post",
                user_id="b",
                org_unit="sales",
                property_keys=["k"],
                property_values=["v"],
            ),
        ]
    )
    payload = request.SerializeToString()
    header = len(payload).to_bytes(4, "big") + zlib.crc32(payload).to_bytes(4, "big")
    (tmp_path / "00000000000000000001-1-000000-2.batch").write_bytes(MAGIC + header + payload)
    entry = Spool(str(tmp_path), max_bytes=10**6, counters=Counters()).take()
    assert entry is not None
    assert entry.events == [
        (b"a" * 16, 5, "wiki", "view", "a", "", "", None),
        (b"b" * 16, 6, "chat", "post", "b", "sales", "", (("k", "v"),)),
    ]
    entry.done()


def test_a_corrupt_file_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counters = Counters()
    spool = Spool(str(tmp_path), max_bytes=10**6, counters=counters)
    spool.write(events("a"))
    spool.write(events("b"))
    [damaged, _] = sorted(tmp_path.glob("*.batch"))
    damaged.write_bytes(damaged.read_bytes()[:-3])
    (tmp_path / "00000000000000000000-1-000000-7.batch").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="uptake"):
        entry = spool.take()
    assert entry is not None
    assert users(entry) == ["b"]
    entry.done()
    assert counters.snapshot(queued=0, spooled=0).spool_corrupt == 8
    assert "corrupt spool file" in caplog.text
    assert len(list(tmp_path.glob("*.corrupt"))) == 2


def test_spooled_events_are_replayed_in_order_after_reconnect(
    tmp_path: Path, make_client: MakeClient
) -> None:
    port = free_port()
    client = make_client(
        target=f"127.0.0.1:{port}",
        transport=None,
        spool_dir=str(tmp_path),
        batch_size=5,
        **FAST_RETRY,
    )
    for i in range(23):
        client.track(f"u{i:02d}", "view", tool="wiki")
    assert client.flush(2) is False
    wait_for(lambda: client.stats().spooled == 23, timeout=5, interval=0.005)
    with FakeServer(port=port) as server:
        assert client.flush(10)
        order = [e.user_id for r in server.received for e in r.events]
        assert order == [f"u{i:02d}" for i in range(23)]
        assert len(server.stored) == 23
    stats = client.stats()
    assert (stats.delivered, stats.spooled, stats.dropped) == (23, 0, 0)
    assert list(tmp_path.iterdir()) == []


def test_a_new_process_replays_what_an_old_one_spooled(
    tmp_path: Path, make_client: MakeClient
) -> None:
    with FakeServer() as server:
        server.script.extend([unavailable(retry_after=5)] * 3)
        first = make_client(target=server.target, transport=None, spool_dir=str(tmp_path))
        for i in range(4):
            first.track(f"u{i}", "view", tool="wiki")
        assert first.close(1) is False
        assert first.stats().shutdown == 0  # spooled, not dropped
        assert len(list(tmp_path.glob("*.batch"))) >= 1
        server.script.clear()
        second = make_client(target=server.target, transport=None, spool_dir=str(tmp_path))
        assert second.flush(10)
        assert sorted(e.user_id for e in server.stored.values()) == ["u0", "u1", "u2", "u3"]


def test_processes_sharing_a_spool_deliver_each_event_once(tmp_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(
        """
        import sys, uptake
        client = uptake.Client(sys.argv[1], spool_dir=sys.argv[2], batch_size=7,
                               retry_initial=0.01, retry_max=0.05)
        for i in range(50):
            client.track(f"{sys.argv[3]}-{i}", "view", tool="wiki")
        client.flush(1)
        # The server appears now; every process replays the shared spool.
        print(client.flush(20), flush=True)
        """
    )
    go = tmp_path / "spool"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"127.0.0.1:{port}", str(go), f"p{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    try:
        wait_for(lambda: len(list(go.glob("*.batch"))) >= 3 * 8, timeout=30, interval=0.005)
        with FakeServer(port=port) as server:
            server.script.append(ok)
            outputs = [p.communicate(timeout=60)[0] for p in processes]
            stored = sorted(e.user_id for e in server.stored.values())
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert [o.strip() for o in outputs] == ["True"] * 3
    assert stored == sorted(f"p{n}-{i}" for n in range(3) for i in range(50))
    sent = sum(len(r.events) for r in server.received)
    assert sent == 150  # no batch was sent twice
    assert not list(go.iterdir())
