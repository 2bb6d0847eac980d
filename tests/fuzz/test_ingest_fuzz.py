"""Fuzz the real gRPC server with hypothesis: raw request bytes and arbitrary field values.

Properties: the server always answers a defined status (never INTERNAL or UNKNOWN),
answers for every event of a request it could decode, stores exactly the events it
acknowledged, stores nothing invalid, and keeps serving afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.oracle import DEFINED, check_store
from tests.server.security.conftest import call_ingest
from tests.server.test_service import settings_for
from tests.support.servers import health_status
from uptake.v1 import ingest_pb2
from uptake_server.app import Service

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Ledger:
    """Every event id sent, and those the server acknowledged as stored."""

    def __init__(self) -> None:
        self.sent: set[bytes] = set()
        self.acknowledged: set[bytes] = set()
        self.codes: set[str] = set()

    def send(self, channel: grpc.Channel, raw: bytes) -> None:
        """Send raw bytes; check the answer against what the bytes hold."""
        try:
            request: ingest_pb2.IngestRequest | None = ingest_pb2.IngestRequest.FromString(raw)
        except DecodeError:
            request = None
        events = list(request.events) if request is not None else []
        self.sent.update(e.event_id for e in events)
        answer = call_ingest(channel, raw, timeout=30)
        assert answer.code.name in DEFINED, answer
        self.codes.add(answer.code.name)
        if answer.code != grpc.StatusCode.OK:
            return
        assert request is not None, "the server accepted bytes protobuf cannot decode"
        response = answer.response
        assert response is not None
        indexes = [r.index for r in response.rejections]
        assert indexes == sorted(set(indexes)) and all(i < len(events) for i in indexes)
        assert response.accepted + response.rejected == len(events)
        assert response.rejected == len(indexes)
        rejected = set(indexes)
        self.acknowledged.update(e.event_id for i, e in enumerate(events) if i not in rejected)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    started = Service(
        settings_for(tmp_path_factory.mktemp("fuzz") / "var", max_message_bytes=64 * 1024)
    )
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def channel(service: Service) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(service.grpc_target) as opened:
        yield opened


def good_request(count: int) -> bytes:
    now = int(time.time() * 1000)
    events = [
        ingest_pb2.Event(
            event_id=os.urandom(16),
            occurred_at_ms=now - i,
            tool="wiki",
            action="page_edit",
            user_id=f"user-{i}",
            org_unit="sales",
            feature="editor",
            client="fuzz/1",
            property_keys=["space", "lang"],
            property_values=["handbook", "de"],
        )
        for i in range(count)
    ]
    return ingest_pb2.IngestRequest(batch_id="fuzz", events=events).SerializeToString()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes flipped, inserted, deleted or repeated."""
    data = bytearray(good_request(draw(st.integers(1, 4))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate"]))
        if action == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
        else:
            del data[at:]
    return bytes(data)


def test_raw_bytes_never_crash_the_server_nor_store_anything_invalid(
    service: Service, channel: grpc.Channel
) -> None:
    ledger = Ledger()

    @FUZZ
    @given(st.one_of(mutated(), st.binary(max_size=512)))
    def send(raw: bytes) -> None:
        ledger.send(channel, raw)

    send()
    assert {"OK", "INVALID_ARGUMENT"} <= ledger.codes, "the examples never reached both paths"
    check_store(service, sent=ledger.sent, acknowledged=ledger.acknowledged)
    assert health_status(service.grpc_target) == health_pb2.HealthCheckResponse.SERVING


text = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="abcxyz_.-0123456789", min_size=1, max_size=70),
    st.sampled_from(["wiki", "Wiki", "a" * 64, "a" * 65, "é", "\x00", "a\x7f"]),
)
ARBITRARY = {
    "event_id": st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20)),
    "occurred_at_ms": st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-400 * 86_400_000, 400_000).map(lambda d: int(time.time() * 1000) + d),
    ),
    "tool": text,
    "action": text,
    "user_id": st.one_of(text, st.text(min_size=250, max_size=260)),
    "org_unit": st.one_of(text, st.text(min_size=125, max_size=132)),
    "feature": text,
    "client": text,
    "property_keys": st.lists(text, max_size=35),
    "property_values": st.lists(st.one_of(text, st.text(min_size=250, max_size=260)), max_size=35),
}


@st.composite
def events(draw: st.DrawFn) -> ingest_pb2.Event:
    """A valid event with zero to three fields replaced by arbitrary values."""
    (event,) = ingest_pb2.IngestRequest.FromString(good_request(1)).events
    for name in draw(st.lists(st.sampled_from(sorted(ARBITRARY)), max_size=3, unique=True)):
        value = draw(ARBITRARY[name])
        if isinstance(value, list):
            event.ClearField(name)  # type: ignore[arg-type]
            getattr(event, name).extend(value)
        else:
            setattr(event, name, value)
    return event


def test_arbitrary_field_values_get_an_answer_per_event(
    service: Service, channel: grpc.Channel
) -> None:
    ledger = Ledger()

    @FUZZ
    @given(st.lists(events(), max_size=12), st.one_of(st.just(""), st.text(max_size=70)))
    def send(batch: list[ingest_pb2.Event], batch_id: str) -> None:
        raw = ingest_pb2.IngestRequest(batch_id=batch_id, events=batch).SerializeToString()
        ledger.send(channel, raw)

    send()
    check_store(service, sent=ledger.sent, acknowledged=ledger.acknowledged)
    assert ledger.acknowledged, "no example was valid: the strategies are too narrow"
