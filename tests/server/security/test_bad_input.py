"""Hostile and broken input through the real gRPC server and store, case by case.

Event-level cases travel between two good events: the bad one gets its exact
rejection (and a failed_events row), the good ones are stored. Request-level
cases (bytes that are not a request, limits of the request) get their exact
status, and nothing of the request is stored. tests/server/test_validation.py
covers the validation rules themselves; this suite proves the wire path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.server.security.conftest import Answer, call_ingest, ids_stored, stored_count
from tests.server.test_service import event, settings_for
from uptake.v1 import ingest_pb2
from uptake_server.app import Service

MAX_EVENTS = 50
MAX_MESSAGE = 256 * 1024
SKEW_MS = 300_000
RETENTION_MS = 396 * 86_400_000


class FromNow(int):
    """Milliseconds from the moment the test sends the event (negative: in the past)."""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = settings_for(
        tmp_path_factory.mktemp("bad-input") / "var",
        max_events_per_request=MAX_EVENTS,
        max_message_bytes=MAX_MESSAGE,
    )
    started = Service(settings)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def channel(service: Service) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(service.grpc_target) as opened:
        yield opened


def properties(count: int, value: str = "v") -> dict[str, Any]:
    return {"property_keys": [f"k{i}" for i in range(count)], "property_values": [value] * count}


def sized_properties(total_bytes: int) -> dict[str, Any]:
    """16 properties whose keys and values take exactly `total_bytes` bytes of UTF-8."""
    keys = [f"k{i:02d}" for i in range(16)]
    room = total_bytes - sum(map(len, keys))
    values = [room // 16 * "v"] * 15 + [(room - room // 16 * 15) * "v"]
    return {"property_keys": keys, "property_values": values}


# (case, changes to a good event, expected (field, code), or None when it is stored)
EVENT_CASES: list[tuple[str, dict[str, Any], tuple[str, str] | None]] = [
    ("tool 64 chars", {"tool": "w" * 64}, None),
    ("tool 65 chars", {"tool": "w" * 65}, ("tool", "too_long")),
    ("action 64 chars", {"action": "a" * 64}, None),
    ("action 65 chars", {"action": "a" * 65}, ("action", "too_long")),
    ("feature 64 chars", {"feature": "f" * 64}, None),
    ("feature 65 chars", {"feature": "f" * 65}, ("feature", "too_long")),
    ("user_id 256 chars", {"user_id": "ü" * 256}, None),
    ("user_id 257 chars", {"user_id": "u" * 257}, ("user_id", "too_long")),
    ("org_unit 128 emoji", {"org_unit": "🏢" * 128}, None),
    ("org_unit 129 chars", {"org_unit": "o" * 129}, ("org_unit", "too_long")),
    ("client 64 chars", {"client": "c" * 64}, None),
    ("client 65 chars", {"client": "c" * 65}, ("client", "too_long")),
    ("32 properties", properties(32), None),
    ("33 properties", properties(33), ("property_keys", "too_many_properties")),
    ("10000 properties", properties(10_000), ("property_keys", "too_many_properties")),
    ("property key 64 chars", {"property_keys": ["k" * 64], "property_values": ["v"]}, None),
    (
        "property key 65 chars",
        {"property_keys": ["k" * 65], "property_values": ["v"]},
        ("property_keys[0]", "too_long"),
    ),
    ("property value 256 chars", properties(1, "v" * 256), None),
    ("property value 257 chars", properties(1, "v" * 257), ("property_values[0]", "too_long")),
    ("properties 4096 bytes", sized_properties(4096), None),
    ("properties 4097 bytes", sized_properties(4097), ("property_values", "properties_too_large")),
    (
        "keys without values",
        {"property_keys": ["a", "b"], "property_values": ["1"]},
        ("property_values", "property_mismatch"),
    ),
    (
        "repeated property key",
        {"property_keys": ["a", "a"], "property_values": ["1", "2"]},
        ("property_keys[1]", "duplicate_property"),
    ),
    ("event_id 15 bytes", {"event_id": b"x" * 15}, ("event_id", "invalid_event_id")),
    ("event_id 17 bytes", {"event_id": b"x" * 17}, ("event_id", "invalid_event_id")),
    ("event_id empty", {"event_id": b""}, ("event_id", "missing")),
    ("skew just inside", {"occurred_at_ms": FromNow(SKEW_MS - 5_000)}, None),
    (
        "skew just beyond",
        {"occurred_at_ms": FromNow(SKEW_MS + 5_000)},
        ("occurred_at_ms", "timestamp_future"),
    ),
    ("far future", {"occurred_at_ms": 2**63 - 1}, ("occurred_at_ms", "timestamp_future")),
    ("retention just inside", {"occurred_at_ms": FromNow(-RETENTION_MS + 3_600_000)}, None),
    (
        "retention just beyond",
        {"occurred_at_ms": FromNow(-RETENTION_MS - 3_600_000)},
        ("occurred_at_ms", "timestamp_too_old"),
    ),
    ("epoch", {"occurred_at_ms": 0}, ("occurred_at_ms", "missing")),
    ("before the epoch", {"occurred_at_ms": -1}, ("occurred_at_ms", "missing")),
    ("NUL in user_id", {"user_id": "al\x00ice"}, ("user_id", "control_characters")),
    ("NUL in tool", {"tool": "wi\x00ki"}, ("tool", "invalid_slug")),
    ("NUL in org_unit", {"org_unit": "\x00"}, ("org_unit", "control_characters")),
    ("NUL in client", {"client": "sdk\x00"}, ("client", "control_characters")),
    ("DEL in property value", properties(1, "\x7f"), ("property_values[0]", "control_characters")),
    ("newline in user_id", {"user_id": "a\nb"}, ("user_id", "control_characters")),
    ("upper-case tool", {"tool": "Wiki"}, ("tool", "invalid_slug")),
    ("no user_id", {"user_id": ""}, ("user_id", "missing")),
]


@pytest.mark.parametrize(
    ("case", "changes", "expected"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES]
)
def test_one_bad_event_is_rejected_exactly_and_its_neighbours_are_stored(
    case: str,
    changes: dict[str, Any],
    expected: tuple[str, str] | None,
    service: Service,
    channel: grpc.Channel,
) -> None:
    good = [event(), event()]
    now = int(time.time() * 1000)
    middle = event(**{k: now + v if isinstance(v, FromNow) else v for k, v in changes.items()})
    batch_id = f"case-{os.urandom(6).hex()}"
    request = ingest_pb2.IngestRequest(batch_id=batch_id, events=[good[0], middle, good[1]])
    answer = call_ingest(channel, request)
    assert answer.code == grpc.StatusCode.OK and answer.response is not None
    rejections = [(r.index, r.field, r.code) for r in answer.response.rejections]
    assert rejections == ([] if expected is None else [(1, *expected)])
    assert answer.response.accepted == (3 if expected is None else 2)
    assert ids_stored(service, [e.event_id for e in good]) == 2
    if expected is None:
        assert ids_stored(service, [middle.event_id]) == 1
    else:
        where = f"batch_id = '{batch_id}' AND event_index = 1 AND code = '{expected[1]}'"
        assert stored_count(service, "failed_events", where) == 1


def test_a_repeated_event_id_is_stored_once_and_acknowledged_each_time(
    service: Service, channel: grpc.Channel
) -> None:
    twin = event()
    first = call_ingest(channel, ingest_pb2.IngestRequest(events=[twin, twin, event()]))
    again = call_ingest(channel, ingest_pb2.IngestRequest(events=[twin]))
    assert first.response is not None and first.response.accepted == 3
    assert again.response is not None and again.response.accepted == 1
    assert ids_stored(service, [twin.event_id]) == 1


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def request_of(*events: bytes, extra: bytes = b"") -> bytes:
    return b"".join(length_delimited(2, e) for e in events) + extra


def with_field(number: int, wire_type: int, payload: bytes) -> bytes:
    """A good event with one more field appended (protobuf: the last value wins)."""
    body = varint(len(payload)) + payload if wire_type == 2 else payload
    return event().SerializeToString() + tag(number, wire_type) + body


def padded_to(size: int) -> bytes:
    """A request of one good event and an unknown field, exactly `size` bytes long."""
    base = request_of(event().SerializeToString())
    room = size - len(base) - 1 - 3  # tag and a 3-byte length
    return base + tag(15, 2) + varint(room) + b"p" * room


# (case, request bytes, status, field violation (None: no BadRequest), text in the message)
REQUEST_CASES: list[tuple[str, bytes, grpc.StatusCode, str | None, str]] = [
    (
        "invalid UTF-8 in a user_id",
        request_of(
            event().SerializeToString(), with_field(5, 2, b"a\xff\xfe"), event().SerializeToString()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[1].user_id",
        "events[1].user_id is not valid UTF-8 (byte 1 of 3)",
    ),
    (
        "a UTF-16 surrogate in a tool",
        request_of(with_field(3, 2, b"\xed\xa0\x80")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[0].tool",
        "not valid UTF-8",
    ),
    (
        "an overlong UTF-8 '/' in a property key",
        request_of(with_field(9, 2, b"\xc0\xaf")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[0].property_keys[0]",
        "not valid UTF-8",
    ),
    (
        "invalid UTF-8 in a column-wise user_id",
        length_delimited(
            4,
            length_delimited(5, b"alice") + length_delimited(5, b"b\xffb"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "columns.user_id[1]",
        "columns.user_id[1] is not valid UTF-8 (byte 1 of 3)",
    ),
    (
        "invalid UTF-8 in batch_id",
        length_delimited(1, b"\xff") + request_of(event().SerializeToString()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "batch_id",
        "batch_id is not valid UTF-8",
    ),
    (
        "a truncated event",
        request_of(event().SerializeToString())[:-3],
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[0]",
        "events[0] is truncated",
    ),
    (
        "an invalid wire type",
        request_of(event().SerializeToString()) + bytes([0x0F]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request",
        "request has field 1 with wire type 7, which does not exist",
    ),
    (
        "groups nested 200 deep",
        request_of(event().SerializeToString()) + bytes([0x7B]) * 200 + bytes([0x7C]) * 200,
        grpc.StatusCode.INVALID_ARGUMENT,
        "field 15",
        "nested too deeply",
    ),
    (
        "batch_id 65 characters",
        ingest_pb2.IngestRequest(batch_id="b" * 65, events=[event()]).SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "batch_id",
        "batch_id is 65 characters; the limit is 64",
    ),
    (
        "a NUL in batch_id",
        ingest_pb2.IngestRequest(batch_id="b\x00", events=[event()]).SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "batch_id",
        "batch_id contains control characters",
    ),
    (
        f"{MAX_EVENTS + 1} events",
        ingest_pb2.IngestRequest(events=[event() for _ in range(51)]).SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "events",
        f"51 events in one request; the limit is {MAX_EVENTS}",
    ),
    (
        "one byte over the message limit",
        padded_to(MAX_MESSAGE + 1),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        None,
        "",
    ),
]


@pytest.mark.parametrize(
    ("case", "raw", "code", "field", "text"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES]
)
def test_a_broken_request_gets_its_exact_status_and_nothing_is_stored(
    case: str,
    raw: bytes,
    code: grpc.StatusCode,
    field: str | None,
    text: str,
    service: Service,
    channel: grpc.Channel,
) -> None:
    answer = call_ingest(channel, raw)
    assert answer.code == code
    assert text in answer.message
    if field is not None:
        assert [f for f, _ in answer.violations] == [field]
    sent = ingest_pb2.IngestRequest()
    try:
        sent.MergeFromString(raw)
    except Exception:  # unparseable: the good events inside cannot be listed, none stored
        return
    assert ids_stored(service, [e.event_id for e in sent.events]) == 0


def accepted(answer: Answer) -> int:
    assert answer.code == grpc.StatusCode.OK and answer.response is not None, answer
    return answer.response.accepted


def test_requests_at_the_limits_pass(service: Service, channel: grpc.Channel) -> None:
    at_most = ingest_pb2.IngestRequest(
        batch_id="b" * 64, events=[event() for _ in range(MAX_EVENTS)]
    )
    assert accepted(call_ingest(channel, at_most)) == MAX_EVENTS
    assert accepted(call_ingest(channel, padded_to(MAX_MESSAGE))) == 1
    assert accepted(call_ingest(channel, b"")) == 0  # an empty request is a valid one


def test_protobuf_rules_for_unexpected_fields(service: Service, channel: grpc.Channel) -> None:
    # protobuf treats a field with an unexpected wire type, or an unknown number,
    # as unknown (a newer client may send fields this server does not know yet):
    # the field reads as absent, and validation judges the rest.
    stamp_as_bytes = event(occurred_at_ms=0).SerializeToString() + length_delimited(2, b"soon")
    org_as_number = event(org_unit="").SerializeToString() + tag(6, 0) + varint(5)
    newer = event(org_unit="sales")
    newer_field = newer.SerializeToString() + length_delimited(99, b"a field of uptake.v1.1")
    answer = call_ingest(channel, request_of(stamp_as_bytes, org_as_number, newer_field))
    assert answer.response is not None
    rejections = [(r.index, r.field, r.code) for r in answer.response.rejections]
    assert rejections == [(0, "occurred_at_ms", "missing")]
    assert answer.response.accepted == 2
    assert ids_stored(service, [newer.event_id]) == 1
