"""The client against a scripted gRPC server on loopback: retries, RetryInfo, deadlines, sizes."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

import uptake
from tests.sdk.fake_server import FakeServer, fail, reject, slow, unavailable
from tests.support.polling import wait_for
from tests.support.servers import free_port

MakeClient = Callable[..., uptake.Client]
FAST_RETRY = {"retry_initial": 0.01, "retry_max": 0.05}


def track_many(client: uptake.Client, count: int, *, prefix: str = "u") -> None:
    """Track `count` events with distinct user ids."""
    for i in range(count):
        client.track(f"{prefix}{i}", "view", tool="wiki", org_unit="sales")


def test_events_arrive_with_the_api_key_and_client_name(make_client: MakeClient) -> None:
    with FakeServer() as server:
        client = make_client(target=server.target, transport=None, api_key="s3cret")
        track_many(client, 3)
        assert client.flush(10)
        [received] = server.received
        assert received.metadata["authorization"] == "Bearer s3cret"
        assert received.metadata["user-agent"].startswith(f"uptake-python/{uptake.__version__}")
        assert [e.user_id for e in received.events] == ["u0", "u1", "u2"]
        assert {e.client for e in received.events} == {"uptake-python/0.1.0"}


def test_no_authorization_without_an_api_key(make_client: MakeClient) -> None:
    with FakeServer() as server:
        client = make_client(target=server.target, transport=None)
        track_many(client, 1)
        assert client.flush(10)
        assert "authorization" not in server.received[0].metadata


def test_unavailable_with_retry_info_waits_as_told(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.extend([unavailable(retry_after=0.4), unavailable(retry_after=0.2)])
        client = make_client(target=server.target, transport=None, **FAST_RETRY)
        track_many(client, 5)
        assert client.flush(10)
        first, second, third = (r.at for r in server.received)
        assert second - first >= 0.38  # told 0.4 s, although the backoff says at most 0.05 s
        assert third - second >= 0.18
        assert len(server.stored) == 5
        assert client.stats().delivered == 5


def test_unavailable_without_retry_info_backs_off_and_retries(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.extend([unavailable()] * 3)
        client = make_client(target=server.target, transport=None, **FAST_RETRY)
        track_many(client, 4)
        assert client.flush(10)
        assert len(server.received) == 4
        assert len(server.stored) == 4


def test_a_server_slower_than_the_deadline_stores_each_event_once(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.append(slow(0.6))
        client = make_client(
            target=server.target, transport=None, request_timeout=0.2, **FAST_RETRY
        )
        track_many(client, 10)
        assert client.flush(10)
        assert len(server.received) == 2  # the first try timed out, the retry succeeded
        ids = [e.event_id for e in server.received[0].events]
        assert ids == [e.event_id for e in server.received[1].events]  # same ids
        assert len(server.stored) == 10
        assert client.stats().delivered == 10


def test_a_partial_success_is_never_retried(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.append(reject(0, 2))
        failures: list[uptake.Failure] = []
        client = make_client(target=server.target, transport=None, on_error=failures.append)
        track_many(client, 4)
        assert client.flush(10) is False
        assert len(server.received) == 1
        stats = client.stats()
        assert (stats.delivered, stats.rejected) == (2, 2)
        assert [(f.field, f.code) for f in failures] == [("action", "invalid_slug")] * 2


def test_permanent_errors_are_not_retried(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.append(fail(grpc.StatusCode.UNAUTHENTICATED, "unknown API key"))
        failures: list[uptake.Failure] = []
        client = make_client(target=server.target, transport=None, on_error=failures.append)
        track_many(client, 3)
        assert client.flush(10) is False
        assert len(server.received) == 1
        assert client.stats().rejected == 3
        [failure] = failures
        assert (failure.code, failure.count) == ("UNAUTHENTICATED", 3)
        assert "unknown API key" in failure.reason


def test_resource_exhausted_splits_the_batch(make_client: MakeClient) -> None:
    with FakeServer(max_events=3) as server:
        client = make_client(target=server.target, transport=None, flush_interval=60)
        track_many(client, 10)
        assert client.flush(10)
        assert len(server.stored) == 10
        assert all(len(r.events) <= 10 for r in server.received)
        assert client.stats().delivered == 10


def test_an_event_refused_alone_as_too_large_is_dropped_as_oversize(
    make_client: MakeClient,
) -> None:
    with FakeServer(max_events=0) as server:
        client = make_client(target=server.target, transport=None, flush_interval=60)
        track_many(client, 2)
        assert client.flush(10) is False
        assert client.stats().oversize == 2
        assert len(server.received) == 3  # the pair, then each alone; no retry


def test_retries_stop_after_max_elapsed(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.extend([unavailable(retry_after=0.1)] * 100)
        client = make_client(target=server.target, transport=None, retry_max_elapsed=0.35)
        track_many(client, 2)
        assert client.flush(5) is False
        assert client.stats().retries_exhausted == 2
        assert 3 <= len(server.received) <= 5


def test_server_down_at_start_then_up(make_client: MakeClient) -> None:
    port = free_port()
    client = make_client(target=f"127.0.0.1:{port}", transport=None, **FAST_RETRY)
    track_many(client, 20)
    assert client.flush(0.5) is False  # nobody listens yet
    with FakeServer(port=port) as server:
        assert client.flush(10)
        assert len(server.stored) == 20
        stats = client.stats()
        assert (stats.delivered, stats.dropped) == (20, 0)


def test_close_during_a_call_in_flight_returns_in_time(make_client: MakeClient) -> None:
    with FakeServer() as server:
        server.script.append(slow(1.5))
        client = make_client(target=server.target, transport=None, request_timeout=30)
        track_many(client, 3)
        client.flush(0.2)  # the call is in flight now
        started = time.monotonic()
        assert client.close(0.4) is False
        assert time.monotonic() - started < 0.8
        wait_for(lambda: client.stats().shutdown == 3, timeout=5, interval=0.005)


def test_first_sends_say_attempt_one_and_resends_count_up(make_client: MakeClient) -> None:
    # The server skips its duplicate lookup only for attempt 1, so a resend must
    # never say 1.
    with FakeServer() as server:
        server.script.extend([unavailable(retry_after=0.01), slow(0.6)])
        client = make_client(
            target=server.target, transport=None, request_timeout=0.3, **FAST_RETRY
        )
        track_many(client, 3)
        assert client.flush(10)
        track_many(client, 2, prefix="later")
        assert client.flush(10)
        attempts = [(r.request.attempt, len(r.events)) for r in server.received]
        assert attempts[:3] == [(1, 3), (2, 3), (3, 3)]
        assert attempts[-1] == (1, 2)
