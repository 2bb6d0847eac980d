"""In-flight bounds on calls, raw bytes (before decoding) and events: UNAVAILABLE + RetryInfo."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.server.security.conftest import Answer, call_ingest, ids_stored
from tests.server.test_service import event, scrape, settings_for
from uptake.v1 import ingest_pb2
from uptake_server.app import Service
from uptake_server.limits import Bounds, InflightLimits
from uptake_server.security.ratelimit import RateLimiter

HOLD_SECONDS = 0.8  # the group commit holds each request this long


def test_a_ticket_gives_back_what_it_holds_once_or_when_dropped() -> None:
    limits = InflightLimits(Bounds(calls=2, bytes=100, events=10))
    first = limits.admit()
    assert first is not None and first.add_bytes(60) and first.add_events(8)
    second = limits.admit()
    assert second is not None
    assert limits.admit() is None  # both call slots taken
    assert not second.add_bytes(50) and not second.add_events(3)
    assert limits.in_flight == (2, 60, 8)
    first.release()
    first.release()
    assert limits.in_flight == (1, 0, 0)
    assert second.add_bytes(500)  # alone, a request larger than the bound passes
    del second  # a call gRPC dropped before its handler ran
    gc.collect()
    assert limits.in_flight == (0, 0, 0)


def test_the_rate_limiter_refills_and_tells_the_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(events_per_second=10, clock=lambda: now[0])
    assert limiter.take("a", 30) == 0  # a full bucket admits a larger batch, into debt
    assert limiter.take("a", 1) == pytest.approx(2.1)  # 20 in debt, plus one token
    assert limiter.take("b", 5) == 0  # buckets are per key
    now[0] += 2.1
    assert limiter.take("a", 1) == 0
    assert limiter.take("c", 1_000_000, rate=None) == 0
    assert RateLimiter(events_per_second=0).take("a", 10**9) == 0  # 0 is off


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service with small bounds whose group commit holds each request a while."""
    settings = settings_for(
        tmp_path_factory.mktemp("tight") / "var",
        grpc_workers=2,  # 8 call slots
        max_inflight_bytes=40_000,
        max_inflight_events=100,
        commit_max_delay_ms=int(HOLD_SECONDS * 1000),
    )
    service = Service(settings)
    service.start()
    yield service
    service.stop()


def big_event() -> ingest_pb2.Event:
    keys = [f"k{i}" for i in range(32)]
    return event(property_keys=keys, property_values=["v" * 250] * 32)


def hold_then(
    service: Service, first: ingest_pb2.IngestRequest, second: ingest_pb2.IngestRequest
) -> tuple[Answer, Answer]:
    """Send `first`, and `second` while the service still holds the first."""
    with grpc.insecure_channel(service.grpc_target) as channel, ThreadPoolExecutor(1) as pool:
        held = pool.submit(call_ingest, channel, first)
        deadline = time.monotonic() + 5
        gauge = "uptake_ingest_inflight_events{}"
        while scrape(service.metrics_url)[gauge] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = call_ingest(channel, second)
        return held.result(), refused


def test_request_bytes_over_the_bound_are_refused_before_decoding(tight: Service) -> None:
    first = ingest_pb2.IngestRequest(events=[big_event() for _ in range(4)])
    second = ingest_pb2.IngestRequest(events=[big_event() for _ in range(4)])
    assert 30_000 < first.ByteSize() < 40_000
    held, refused = hold_then(tight, first, second)
    assert held.code == grpc.StatusCode.OK
    assert refused.code == grpc.StatusCode.UNAVAILABLE
    assert refused.message == ("the server holds its limit of 40000 request bytes; retry later")
    assert refused.retry_after is not None and refused.retry_after >= 1.0
    assert ids_stored(tight, [e.event_id for e in second.events]) == 0
    metrics = scrape(tight.metrics_url)
    assert metrics["uptake_ingest_inflight_bytes{}"] == 0


def test_events_over_the_bound_are_refused(tight: Service) -> None:
    first = ingest_pb2.IngestRequest(events=[event() for _ in range(80)])
    second = ingest_pb2.IngestRequest(events=[event() for _ in range(30)])
    held, refused = hold_then(tight, first, second)
    assert held.code == grpc.StatusCode.OK
    assert refused.code == grpc.StatusCode.UNAVAILABLE
    assert refused.message == "the server holds its limit of 100 events; retry later"
    assert refused.retry_after is not None


def test_too_many_calls_are_unavailable_never_resource_exhausted(tight: Service) -> None:
    # gRPC's own concurrency limit answers RESOURCE_EXHAUSTED, which clients read as
    # "request too large" and split, then drop; the guard answers UNAVAILABLE.
    requests = [ingest_pb2.IngestRequest(events=[event()]) for _ in range(14)]
    start = threading.Barrier(len(requests))
    with grpc.insecure_channel(tight.grpc_target) as channel:

        def send(request: ingest_pb2.IngestRequest) -> Answer:
            start.wait()
            return call_ingest(channel, request)

        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(send, requests))
    codes = [a.code for a in answers]
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert codes.count(grpc.StatusCode.OK) <= 8
    busy = [a for a in answers if a.code == grpc.StatusCode.UNAVAILABLE]
    assert all(a.message.startswith("the server is busy (8 requests in flight)") for a in busy)
    assert all(a.retry_after is not None for a in busy)
    stored = [r.events[0].event_id for r, a in zip(requests, answers, strict=True) if a.response]
    assert ids_stored(tight, stored) == len(stored)
