"""Client behaviour through the in-memory transport: what track() sends and counts."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import uptake
from tests.support.polling import wait_for
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse, Rejection

MakeClient = Callable[..., uptake.Client]


def test_track_sends_every_field(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport)
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    client.track(
        "user-42",
        "page_edit",
        tool="wiki",
        org_unit="sales",
        feature="editor.v2",
        properties={"space": "eng", "lang": "en"},
        timestamp=when,
    )
    assert client.flush(5)
    [event] = transport.events
    assert event.user_id == "user-42"
    assert event.action == "page_edit"
    assert event.tool == "wiki"
    assert event.org_unit == "sales"
    assert event.feature == "editor.v2"
    assert event.properties == {"space": "eng", "lang": "en"}
    assert event.occurred_at == when
    assert event.client == f"uptake-python/{uptake.__version__}"
    [request] = transport.requests
    wire = request.columns
    assert list(wire.occurred_at_ms) == [int(when.timestamp() * 1000)]
    assert list(wire.property_counts) == [2]
    assert list(wire.property_keys) == ["space", "lang"]
    assert list(wire.property_values) == ["eng", "en"]


def test_event_ids_are_uuid7_stamped_at_track_time(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport)
    before = time.time_ns() // 1_000_000
    for _ in range(200):
        client.track("u", "view", tool="wiki")
    after = time.time_ns() // 1_000_000
    assert client.flush(5)
    ids = [event.event_id for event in transport.events]
    assert len(set(ids)) == 200
    for event_id in ids:
        assert event_id.version == 7
        assert event_id.variant == uuid.RFC_4122
        assert before <= event_id.int >> 80 <= after
    # Each of the 74 bits outside the time, version and variant is random: seen as
    # 0 and as 1 among 200 ids (each fails to vary with probability 2**-199).
    ones = zeros = 0
    for event_id in ids:
        ones |= event_id.int
        zeros |= ~event_id.int
    varying = ones & zeros & ((1 << 80) - 1)
    assert bin(varying).count("1") == 74
    assert varying & ((0xF << 76) | (0b11 << 62)) == 0
    wire = transport.requests[0].columns
    assert all(len(event_id) == 16 for event_id in wire.event_id)
    assert all(before <= ms <= after for ms in wire.occurred_at_ms)


def test_events_are_batched_by_count(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport, batch_size=10, flush_interval=60)
    for i in range(35):
        client.track(f"u{i}", "view", tool="wiki")
    assert client.flush(5)
    sizes = [len(request.columns.event_id) for request in transport.requests]
    assert sum(sizes) == 35
    assert max(sizes) == 10
    assert [e.user_id for e in transport.events] == [f"u{i}" for i in range(35)]


def test_a_full_batch_is_sent_without_waiting_for_the_timer(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport, batch_size=5, flush_interval=60)
    for i in range(5):
        client.track(f"u{i}", "view", tool="wiki")
    wait_for(lambda: transport.events, timeout=5, interval=0.005)
    assert len(transport.events) == 5


def test_events_are_sent_after_the_flush_interval(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport, flush_interval=0.05)
    client.track("u", "view", tool="wiki")
    wait_for(lambda: transport.events, timeout=5, interval=0.005)
    assert len(transport.events) == 1


def test_batches_stay_under_max_batch_bytes(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport, max_batch_bytes=2000, flush_interval=60)
    for i in range(40):
        client.track(f"user-{i:03d}", "view", tool="wiki", properties={"p": "x" * 100})
    assert client.flush(5)
    assert len(transport.events) == 40
    assert len(transport.requests) > 1
    assert all(request.ByteSize() <= 2000 for request in transport.requests)


def test_an_event_larger_than_a_batch_is_dropped_as_oversize(make_client: MakeClient) -> None:
    failures: list[uptake.Failure] = []
    client = make_client(max_batch_bytes=300, on_error=failures.append)
    client.track("u", "view", tool="wiki", properties={"p": "x" * 250, "q": "y" * 200})
    client.track("u", "view", tool="wiki")
    assert not client.flush(5)
    stats = client.stats()
    assert (stats.oversize, stats.delivered) == (1, 1)
    assert [f.outcome for f in failures] == ["oversize"]


def test_a_full_queue_drops_and_counts(make_client: MakeClient) -> None:
    gate = threading.Event()

    def slow(request: IngestRequest) -> IngestResponse:
        gate.wait(10)
        return IngestResponse(accepted=len(request.columns.event_id))

    transport = uptake.InMemoryTransport(respond=slow)
    client = make_client(transport=transport, max_queue_size=10, batch_size=5, flush_interval=60)
    for i in range(5):
        client.track(f"u{i}", "view", tool="wiki")
    # The worker holds the first batch in a slow send.
    wait_for(lambda: transport.requests, timeout=5, interval=0.005)
    for i in range(30):
        client.track(f"v{i}", "view", tool="wiki")
    assert client.stats().queue_full == 20
    gate.set()
    assert not client.flush(5)  # drops since the last flush: not everything delivered
    assert client.stats().delivered == 15
    client.track("w", "view", tool="wiki")
    assert client.flush(5)  # no new drop


def test_block_mode_waits_for_room(make_client: MakeClient) -> None:
    gate = threading.Event()

    def slow(request: IngestRequest) -> IngestResponse:
        gate.wait(10)
        return IngestResponse(accepted=len(request.columns.event_id))

    transport = uptake.InMemoryTransport(respond=slow)
    client = make_client(
        transport=transport,
        max_queue_size=2,
        batch_size=2,
        flush_interval=60,
        on_full="block",
        block_timeout=0.2,
    )
    for i in range(4):
        client.track(f"u{i}", "view", tool="wiki")  # two sent (held), two queued
    started = time.monotonic()
    client.track("late", "view", tool="wiki")
    assert time.monotonic() - started >= 0.15  # waited for room, then gave up
    assert client.stats().queue_full == 1
    threading.Timer(0.1, gate.set).start()
    assert client.flush(5) is False
    assert client.stats().delivered == 4


def test_flush_and_close_return_within_their_timeout_when_the_server_hangs(
    make_client: MakeClient,
) -> None:
    gate = threading.Event()

    def hang(request: IngestRequest) -> IngestResponse:
        gate.wait(30)
        return IngestResponse(accepted=len(request.columns.event_id))

    client = make_client(transport=uptake.InMemoryTransport(respond=hang))
    client.track("u", "view", tool="wiki")
    started = time.monotonic()
    assert client.flush(0.3) is False
    assert 0.25 <= time.monotonic() - started < 1.0
    started = time.monotonic()
    assert client.close(0.3) is False
    assert time.monotonic() - started < 1.0
    gate.set()


def test_rejections_are_counted_and_reported(make_client: MakeClient) -> None:
    def reject_second(request: IngestRequest) -> IngestResponse:
        return IngestResponse(
            accepted=len(request.columns.event_id) - 1,
            rejected=1,
            rejections=[
                Rejection(index=1, field="tool", reason="unknown tool 'wiki'", code="unknown_tool")
            ],
        )

    failures: list[uptake.Failure] = []
    transport = uptake.InMemoryTransport(respond=reject_second)
    client = make_client(transport=transport, on_error=failures.append)
    for i in range(3):
        client.track(f"u{i}", "view", tool="wiki")
    assert client.flush(5) is False
    assert len(transport.requests) == 1  # a partial success is never retried
    stats = client.stats()
    assert (stats.delivered, stats.rejected) == (2, 1)
    [failure] = failures
    assert failure.outcome == "rejected"
    assert (failure.field, failure.code, failure.reason) == (
        "tool",
        "unknown_tool",
        "unknown tool 'wiki'",
    )
    assert failure.event_id == transport.requests[0].columns.event_id[1].hex()
    assert [e.user_id for e in transport.events] == ["u0", "u2"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.track("", "view", tool="wiki"), ValueError),
        (lambda c: c.track(None, "view", tool="wiki"), TypeError),
        (lambda c: c.track("u", "View", tool="wiki"), ValueError),
        (lambda c: c.track("u", "view", tool="my wiki"), ValueError),
        (lambda c: c.track("u", "view", tool=["wiki"]), TypeError),
        (lambda c: c.track("u", "view", tool="wiki", feature="Bold"), ValueError),
        (lambda c: c.track("u", "view", tool="wiki", org_unit=3), TypeError),
        (lambda c: c.track("u" * 257, "view", tool="wiki"), ValueError),
        (lambda c: c.track("u", "view", tool="wiki", properties={"k": 1}), TypeError),
        (lambda c: c.track("u", "view", tool="wiki", properties=[("k", "v")]), TypeError),
        (lambda c: c.track("u", "view", tool="wiki", timestamp=datetime(2026, 1, 1)), ValueError),
        (lambda c: c.track("u", "view", tool="wiki", timestamp=1.5), TypeError),
    ],
)
def test_programming_errors_raise_when_strict(
    make_client: MakeClient, call: Callable[[uptake.Client], None], error: type[Exception]
) -> None:
    client = make_client()
    with pytest.raises(error):
        call(client)
    lenient = make_client(strict=False)
    call(lenient)
    assert lenient.stats().invalid == 1


def test_the_error_names_the_offending_argument(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(ValueError, match=r"tool must be a lowercase slug .* got 'Wiki'"):
        client.track("u", "view", tool="Wiki")
    with pytest.raises(TypeError, match="user_id must be a str, got int"):
        client.track(42, "view", tool="wiki")  # type: ignore[arg-type]


def test_track_after_close_is_counted_as_shutdown(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport)
    client.track("u", "view", tool="wiki")
    assert client.close(5)
    client.track("u", "view", tool="wiki")
    assert client.stats().shutdown == 1
    assert len(transport.events) == 1
    assert client.close(1) is True  # already closed: the first answer again


def test_close_counts_undeliverable_events_as_shutdown(make_client: MakeClient) -> None:
    def down(request: IngestRequest) -> IngestResponse:
        raise uptake.TransportError("UNAVAILABLE", "store down", retry_after=0.05)

    client = make_client(transport=uptake.InMemoryTransport(respond=down))
    for i in range(7):
        client.track(f"u{i}", "view", tool="wiki")
    started = time.monotonic()
    assert client.close(0.5) is False
    assert time.monotonic() - started < 1.5
    stats = client.stats()
    assert (stats.shutdown, stats.delivered, stats.queued) == (7, 0, 0)


def test_the_context_manager_closes(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    with uptake.Client(transport=transport) as client:
        client.track("u", "view", tool="wiki")
    assert len(transport.events) == 1
    client.track("u", "view", tool="wiki")
    assert client.stats().shutdown == 1


def test_sync_mode_sends_in_the_callers_thread(make_client: MakeClient) -> None:
    threads: list[str] = []

    def record_thread(request: IngestRequest) -> IngestResponse:
        threads.append(threading.current_thread().name)
        return IngestResponse(accepted=len(request.columns.event_id))

    transport = uptake.InMemoryTransport(respond=record_thread)
    client = make_client(transport=transport, mode="sync")
    client.track("u", "view", tool="wiki")
    assert len(transport.events) == 1  # already sent, no flush needed
    assert threads == [threading.current_thread().name]
    assert client.flush(1)


def test_source_pseudonymisation_replaces_user_ids(make_client: MakeClient) -> None:
    import hashlib
    import hmac

    key = "k" * 32
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport, pseudonym_key=key)
    client.track("alice@example.org", "view", tool="wiki")
    assert client.flush(5)
    [event] = transport.events
    expected = hmac.new(key.encode(), b"alice@example.org", hashlib.sha256).hexdigest()[:32]
    assert event.user_id == expected


def test_module_level_functions_wrap_one_default_client() -> None:
    transport = uptake.InMemoryTransport()
    client = uptake.init(transport=transport)
    try:
        uptake.track("u", "view", tool="wiki", org_unit="sales")
        assert uptake.flush(5)
        assert [e.org_unit for e in transport.events] == ["sales"]
        replacement = uptake.init(transport=uptake.InMemoryTransport())
        assert client.stats().delivered == 1
        uptake.track("u", "view", tool="wiki")
        client.track("u", "view", tool="wiki")
        assert client.stats().shutdown == 1  # init() closed the previous default client
        replacement.close()
    finally:
        client.close()


def test_occurred_at_is_utc_milliseconds(make_client: MakeClient) -> None:
    transport = uptake.InMemoryTransport()
    client = make_client(transport=transport)
    client.track("u", "view", tool="wiki", timestamp=datetime(2026, 3, 1, 12, 0, 0, 1500, UTC))
    assert client.flush(5)
    assert transport.requests[0].columns.occurred_at_ms[0] == 1772366400001


def test_sync_mode_retries_in_the_callers_thread(make_client: MakeClient) -> None:
    answers = iter([uptake.TransportError("UNAVAILABLE", "down", retry_after=0.05), None, None])

    def flaky(request: IngestRequest) -> IngestResponse:
        error = next(answers)
        if error is not None:
            raise error
        return IngestResponse(accepted=len(request.columns.event_id))

    transport = uptake.InMemoryTransport(respond=flaky)
    client = make_client(transport=transport, mode="sync")
    started = time.monotonic()
    client.track("u", "view", tool="wiki")
    assert time.monotonic() - started >= 0.05  # waited as told, then sent again
    assert len(transport.requests) == 2
    assert len(transport.events) == 1
    assert client.stats().delivered == 1


def test_sync_mode_spools_when_the_server_is_down(make_client: MakeClient, tmp_path: Path) -> None:
    up = threading.Event()

    def maybe_down(request: IngestRequest) -> IngestResponse:
        if not up.is_set():
            raise uptake.TransportError("UNAVAILABLE", "down")
        return IngestResponse(accepted=len(request.columns.event_id))

    transport = uptake.InMemoryTransport(respond=maybe_down)
    client = make_client(transport=transport, mode="sync", spool_dir=str(tmp_path))
    started = time.monotonic()
    client.track("u1", "view", tool="wiki")
    client.track("u2", "view", tool="wiki")
    assert time.monotonic() - started < 0.5  # no retry wait: the spool keeps them
    assert client.stats().spooled == 2
    assert client.flush(1) is False
    up.set()
    client.track("u3", "view", tool="wiki")  # replays the spool first, in order
    assert [e.user_id for e in transport.events] == ["u1", "u2", "u3"]
    assert client.flush(1)
