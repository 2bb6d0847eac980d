from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptake.v1 import ingest_pb2
from uptake_server.ingest.validation import (
    CODES,
    MAX_PROPERTIES,
    MAX_PROPERTIES_BYTES,
    Limits,
    _event_problem,
    batch_id_problem,
    validate_events,
)

NOW = 1_800_000_000_000
LIMITS = Limits(max_clock_skew_ms=300_000, retention_ms=10 * 86_400_000)


def fake_pseudonym(user_id: str) -> bytes:
    return (user_id.encode() * 16)[:16]


def good(**changes: object) -> ingest_pb2.Event:
    fields: dict[str, object] = {
        "event_id": os.urandom(16),
        "occurred_at_ms": NOW - 1000,
        "tool": "wiki",
        "action": "page_edit",
        "user_id": "alice",
        "org_unit": "sales",
        "feature": "editor",
        "client": "uptake-python/0.1.0",
        "property_keys": ["page"],
        "property_values": ["home"],
    }
    fields.update(changes)
    return ingest_pb2.Event(**fields)  # type: ignore[arg-type]


def run(*events: ingest_pb2.Event):  # type: ignore[no-untyped-def]
    return validate_events(
        events, batch_id="b", now_ms=NOW, limits=LIMITS, pseudonymise=fake_pseudonym
    )


CASES = [
    ("event_id", "missing", {"event_id": b""}),
    ("event_id", "invalid_event_id", {"event_id": b"x" * 15}),
    ("event_id", "invalid_event_id", {"event_id": b"x" * 17}),
    ("occurred_at_ms", "missing", {"occurred_at_ms": 0}),
    ("occurred_at_ms", "timestamp_future", {"occurred_at_ms": NOW + 300_001}),
    ("occurred_at_ms", "timestamp_too_old", {"occurred_at_ms": NOW - 10 * 86_400_000 - 1}),
    ("tool", "missing", {"tool": ""}),
    ("tool", "invalid_slug", {"tool": "Wiki"}),
    ("tool", "invalid_slug", {"tool": "1wiki"}),
    ("tool", "invalid_slug", {"tool": "wi ki"}),
    ("tool", "too_long", {"tool": "w" * 65}),
    ("action", "missing", {"action": ""}),
    ("action", "invalid_slug", {"action": "edit!"}),
    ("user_id", "missing", {"user_id": ""}),
    ("user_id", "too_long", {"user_id": "u" * 257}),
    ("user_id", "control_characters", {"user_id": "al\x00ice"}),
    ("org_unit", "too_long", {"org_unit": "o" * 129}),
    ("org_unit", "control_characters", {"org_unit": "sales\n"}),
    ("feature", "invalid_slug", {"feature": "Editor"}),
    ("client", "too_long", {"client": "c" * 65}),
    ("property_values", "property_mismatch", {"property_keys": ["a", "b"]}),
    ("property_keys[0]", "invalid_slug", {"property_keys": ["Page"]}),
    (
        "property_keys[1]",
        "duplicate_property",
        {"property_keys": ["a", "a"], "property_values": ["1", "2"]},
    ),
    ("property_values[0]", "too_long", {"property_values": ["v" * 257]}),
    ("property_values[0]", "control_characters", {"property_values": ["\x07"]}),
    (
        "property_keys",
        "too_many_properties",
        {
            "property_keys": [f"k{i}" for i in range(MAX_PROPERTIES + 1)],
            "property_values": ["v"] * (MAX_PROPERTIES + 1),
        },
    ),
    (
        "property_values",
        "properties_too_large",
        {
            "property_keys": [f"k{i}" for i in range(20)],
            "property_values": ["v" * 250] * 20,
        },
    ),
]


@pytest.mark.parametrize(("field", "code", "changes"), CASES)
def test_each_bad_field_is_rejected_with_field_and_code(
    field: str, code: str, changes: dict[str, object]
) -> None:
    result = run(good(), good(**changes), good())
    assert len(result.events) == 2
    assert [(r.index, r.field, r.code) for r in result.rejections] == [(1, field, code)]
    assert code in CODES
    assert result.rejections[0].reason


def test_limits_just_inside_are_accepted() -> None:
    result = run(
        good(occurred_at_ms=NOW + 300_000),
        good(occurred_at_ms=NOW - 10 * 86_400_000),
        good(tool="w" * 64, user_id="u" * 256, org_unit="o" * 128, client="c" * 64),
        good(
            property_keys=[f"k{i:02d}" for i in range(MAX_PROPERTIES)],
            property_values=["v" * 100] * MAX_PROPERTIES,
        ),
        good(org_unit="", feature="", client="", property_keys=[], property_values=[]),
        good(org_unit="Vertrieb Süd / Team 3", user_id="Jürgen.Müller@example.com"),
    )
    assert result.rejections == ()
    assert len(result.events) == 6
    assert MAX_PROPERTIES * (3 + 100) < MAX_PROPERTIES_BYTES


def test_accepted_columns_carry_every_field_and_only_the_pseudonym() -> None:
    event = good()
    result = run(event)
    cols = result.events
    assert cols.event_id == [event.event_id]
    assert cols.occurred_at == [event.occurred_at_ms]
    assert cols.received_at == [NOW]
    assert (cols.tool, cols.action, cols.org_unit, cols.feature) == (
        ["wiki"],
        ["page_edit"],
        ["sales"],
        ["editor"],
    )
    assert cols.user_id == [fake_pseudonym("alice")]
    assert (cols.property_keys, cols.property_values) == ([["page"]], [["home"]])


def test_failed_rows_keep_reason_and_payload_without_the_raw_user_id() -> None:
    result = run(good(tool="Bad Tool", user_id="raw-user-1234"))
    failed = result.failed
    assert failed.event_index == [0]
    assert failed.code == ["invalid_slug"]
    assert failed.field == ["tool"]
    payload = json.loads(failed.payload[0])
    assert payload["tool"] == "Bad Tool"
    assert payload["user_id"] == fake_pseudonym("raw-user-1234").hex()
    assert "raw-user-1234" not in failed.payload[0]
    assert "raw-user-1234" not in failed.reason[0]


def test_batch_id_limits() -> None:
    assert batch_id_problem("b" * 64) is None
    assert "65 characters" in (batch_id_problem("b" * 65) or "")
    assert "control characters" in (batch_id_problem("a\x00") or "")


event_fields = st.fixed_dictionaries(
    {
        "event_id": st.binary(max_size=20),
        "occurred_at_ms": st.integers(min_value=-(2**62), max_value=2**62),
        "tool": st.text(max_size=70),
        "action": st.text(max_size=70),
        "user_id": st.text(max_size=300),
        "org_unit": st.text(max_size=140),
        "feature": st.text(max_size=70),
        "client": st.text(max_size=70),
        "property_keys": st.lists(st.text(max_size=70), max_size=40),
        "property_values": st.lists(st.text(max_size=300), max_size=40),
    }
)


@given(st.lists(event_fields, max_size=8))
def test_every_event_is_either_accepted_or_rejected_exactly_once(
    events: list[dict[str, object]],
) -> None:
    messages = [ingest_pb2.Event(**e) for e in events]  # type: ignore[arg-type]
    result = run(*messages)
    rejected = [r.index for r in result.rejections]
    assert len(result.events) + len(rejected) == len(messages)
    assert rejected == sorted(set(rejected))
    assert len(result.failed) == len(rejected)
    assert all(r.code in CODES for r in result.rejections)
    # Whatever was accepted satisfies the limits.
    for tool, uid in zip(result.events.tool, result.events.user_id, strict=True):
        assert 1 <= len(tool) <= 64 and tool[0].isalpha() and tool == tool.lower()
        assert len(uid) == 16


near_valid_event = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from([b"a" * 16, b"b" * 16, b"c" * 15, b""]),
        "occurred_at_ms": st.sampled_from(
            [NOW, NOW - 1000, NOW + 300_000, NOW + 300_001, NOW - 10 * 86_400_000, 0]
        ),
        "tool": st.sampled_from(["wiki", "chat", "Wiki", ""]),
        "action": st.sampled_from(["view", "edit", "e dit"]),
        "user_id": st.sampled_from(["alice", "bob", "", "u" * 257, "nul\x00"]),
        "org_unit": st.sampled_from(["", "sales", "o" * 129, "tab\t"]),
        "feature": st.sampled_from(["", "editor", "Editor"]),
        "client": st.sampled_from(["", "uptake-python/0.1.0", "c" * 65]),
        "property_keys": st.sampled_from([[], ["a"], ["a", "a"], ["B"]]),
        "property_values": st.sampled_from([[], ["1"], ["1", "2"]]),
    }
)


@given(st.lists(near_valid_event, min_size=1, max_size=6))
def test_batch_fast_path_agrees_with_event_by_event_checks(
    events: list[dict[str, object]],
) -> None:
    messages = [ingest_pb2.Event(**e) for e in events]  # type: ignore[arg-type]
    result = run(*messages)
    newest = NOW + LIMITS.max_clock_skew_ms
    oldest = NOW - LIMITS.retention_ms
    problems = [_event_problem(m, newest=newest, oldest=oldest) for m in messages]
    accepted = [m for m, p in zip(messages, problems, strict=True) if p is None]
    assert list(result.events.event_id) == [m.event_id for m in accepted]
    assert list(result.events.property_keys) == [list(m.property_keys) for m in accepted]
    assert list(result.events.property_values) == [list(m.property_values) for m in accepted]
    assert list(result.events.client) == [m.client for m in accepted]
    assert [(r.index, r.field, r.code) for r in result.rejections] == [
        (i, p[0], p[1]) for i, p in enumerate(problems) if p is not None
    ]
