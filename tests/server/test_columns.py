"""Column-wise requests: the same events, limits and rejections as one message per event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.server.test_validation import LIMITS, NOW, fake_pseudonym
from uptake.v1 import ingest_pb2
from uptake_server.ingest.columns import (
    ColumnsProblem,
    event_count,
    from_columns,
    incoming,
    tools,
)
from uptake_server.ingest.validation import ValidationResult, validate_events

_PER_EVENT = ("event_id", "occurred_at_ms", "tool", "action", "user_id")
_PER_EVENT += ("org_unit", "feature", "client")


def columns_of(events: list[ingest_pb2.Event]) -> ingest_pb2.Columns:
    """Return the events column-wise, every column filled."""
    columns = ingest_pb2.Columns()
    for name in _PER_EVENT:
        getattr(columns, name).extend(getattr(e, name) for e in events)
    columns.property_counts.extend(len(e.property_keys) for e in events)
    columns.property_keys.extend(k for e in events for k in e.property_keys)
    columns.property_values.extend(v for e in events for v in e.property_values)
    return columns


def validate(events: object) -> ValidationResult:
    return validate_events(
        events,  # type: ignore[arg-type]
        batch_id="b",
        now_ms=NOW,
        limits=LIMITS,
        pseudonymise=fake_pseudonym,
    )


# Events near every limit; keys and values of equal length, as the column-wise form
# can only say (a count per event).
near_valid = st.builds(
    lambda event_id, ms, tool, action, user, unit, feature, client, props: ingest_pb2.Event(
        event_id=event_id,
        occurred_at_ms=ms,
        tool=tool,
        action=action,
        user_id=user,
        org_unit=unit,
        feature=feature,
        client=client,
        property_keys=[k for k, _ in props],
        property_values=[v for _, v in props],
    ),
    st.sampled_from([b"a" * 16, b"b" * 16, b"c" * 15, b""]),
    st.sampled_from([NOW, NOW - 1000, NOW + 300_001, NOW - 10 * 86_400_000 - 1, 0]),
    st.sampled_from(["wiki", "chat", "Wiki", ""]),
    st.sampled_from(["view", "edit", "e dit"]),
    st.sampled_from(["alice", "bob", "", "u" * 257, "nul\x00", "zoë"]),
    st.sampled_from(["", "sales", "o" * 129, "tab\t"]),
    st.sampled_from(["", "editor", "Editor"]),
    st.sampled_from(["", "uptake-python/0.1.0", "c" * 65]),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "B"]), st.sampled_from(["1", "v" * 257, "\x07"])),
        max_size=3,
    ),
)


@given(st.lists(near_valid, max_size=6))
def test_columns_and_messages_give_the_same_outcome(events: list[ingest_pb2.Event]) -> None:
    rows = validate(events)
    columns = validate(from_columns(columns_of(events)))
    assert columns.rejections == rows.rejections
    assert columns.events == rows.events
    assert columns.failed == rows.failed


def test_an_empty_column_means_an_empty_field_in_every_event() -> None:
    columns = ingest_pb2.Columns(
        event_id=[b"a" * 16, b"b" * 16],
        occurred_at_ms=[NOW, NOW],
        tool=["wiki", "wiki"],
        action=["view", "edit"],
        user_id=["alice", "bob"],
    )
    result = validate(from_columns(columns))
    assert result.rejections == ()
    assert result.events.org_unit == ["", ""]
    assert result.events.feature == ["", ""]
    assert result.events.client == ["", ""]
    assert result.events.property_keys == [[], []]
    # A required field left out is missing in each event, each rejected on its own.
    del columns.user_id[:]
    result = validate(from_columns(columns))
    assert [(r.index, r.field, r.code) for r in result.rejections] == [
        (0, "user_id", "missing"),
        (1, "user_id", "missing"),
    ]


def test_properties_follow_one_another_by_count() -> None:
    columns = ingest_pb2.Columns(
        event_id=[b"a" * 16, b"b" * 16, b"c" * 16],
        occurred_at_ms=[NOW] * 3,
        tool=["wiki"] * 3,
        action=["view"] * 3,
        user_id=["u"] * 3,
        property_counts=[2, 0, 1],
        property_keys=["space", "lang", "page"],
        property_values=["eng", "en", "home"],
    )
    result = validate(from_columns(columns))
    assert result.events.property_keys == [["space", "lang"], [], ["page"]]
    assert result.events.property_values == [["eng", "en"], [], ["home"]]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"tool": ["wiki"]},
            "columns.tool",
            "columns.tool has 1 entries for 2 events; a per-event column has one entry per "
            "event or none",
        ),
        (
            {"org_unit": ["a", "b", "c"]},
            "columns.event_id",
            "columns.event_id has 2 entries for 3 events; a per-event column has one entry "
            "per event or none",
        ),
        (
            {"property_counts": [1, 1], "property_keys": ["a"], "property_values": ["1"]},
            "columns.property_keys",
            "columns.property_keys has 1 entries; property_counts add up to 2",
        ),
        (
            {"property_counts": [1, 0], "property_keys": ["a"], "property_values": []},
            "columns.property_values",
            "columns.property_values has 0 entries; property_counts add up to 1",
        ),
        (
            {"property_keys": ["a"], "property_values": ["1"]},
            "columns.property_keys",
            "columns.property_keys has 1 entries; property_counts add up to 0",
        ),
    ],
)
def test_columns_that_do_not_line_up_name_the_column(
    changes: dict[str, list[object]], field: str, message: str
) -> None:
    values: dict[str, list[object]] = {
        "event_id": [b"a" * 16, b"b" * 16],
        "occurred_at_ms": [NOW, NOW],
        "tool": ["wiki", "wiki"],
        "action": ["view", "view"],
        "user_id": ["u", "v"],
    }
    values.update(changes)
    with pytest.raises(ColumnsProblem) as info:
        from_columns(ingest_pb2.Columns(**values))  # type: ignore[arg-type]
    assert (info.value.field, info.value.description) == (field, message)


def test_a_request_carries_messages_or_columns_not_both() -> None:
    request = ingest_pb2.IngestRequest(
        events=[ingest_pb2.Event(tool="wiki")],
        columns=ingest_pb2.Columns(tool=["chat", "wiki"]),
    )
    with pytest.raises(ColumnsProblem) as info:
        incoming(request)
    assert info.value.field == "columns"
    assert "both in events and in columns" in info.value.description
    assert event_count(request) == 3
    assert list(tools(request)) == [
        ("events[0]", "wiki"),
        ("columns.tool[0]", "chat"),
        ("columns.tool[1]", "wiki"),
    ]


def test_counts_and_tools_of_each_form() -> None:
    rows = ingest_pb2.IngestRequest(events=[ingest_pb2.Event(tool="wiki")] * 2)
    assert (event_count(rows), list(tools(rows))) == (
        2,
        [("events[0]", "wiki"), ("events[1]", "wiki")],
    )
    # The longest per-event column gives the count, whichever it is.
    columns = ingest_pb2.IngestRequest(columns=ingest_pb2.Columns(user_id=["a", "b", "c"]))
    assert event_count(columns) == 3
    assert list(tools(columns)) == []
    assert event_count(ingest_pb2.IngestRequest()) == 0


def test_enrichers_write_through_views_and_only_text() -> None:
    incoming_columns = from_columns(
        ingest_pb2.Columns(user_id=["alice", "bob"], org_unit=["", "sales"], tool=["wiki"] * 2)
    )
    views = incoming_columns.views()
    assert [(v.user_id, v.org_unit, v.tool) for v in views] == [
        ("alice", "", "wiki"),
        ("bob", "sales", "wiki"),
    ]
    views[0].org_unit = "finance"
    views[1].feature = "editor"
    assert incoming_columns.org_unit == ["finance", "sales"]
    assert incoming_columns.feature == ["", "editor"]
    with pytest.raises(TypeError, match="org_unit must be a str, got NoneType"):
        views[0].org_unit = None  # type: ignore[assignment]
    assert incoming_columns.org_unit == ["finance", "sales"]
