"""Validation of activity input (pure): every bad field gets a clear error naming it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from uptake_server.activities.model import (
    DAY_MS,
    MAX_ORG_UNITS,
    Activity,
    InvalidActivity,
    Known,
    make_id,
    validate,
)
from uptake_server.errors import ConfigError
from uptake_server.registry import parse_registry

NOW_MS = 1_790_000_000_000
KNOWN = Known(tools={"wiki", "crm"}, org_units={"sales", "support", "finance"})
GOOD = Activity(
    id="wiki-roadshow",
    tool="wiki",
    kind="roadshow",
    title="Wiki roadshow at the sales offices",
    start_ms=NOW_MS - 10 * DAY_MS,
    end_ms=NOW_MS - 9 * DAY_MS,
    org_units=("support", "sales"),
    link="https://intranet.example/wiki",
)


def test_a_good_activity_passes_with_its_units_sorted() -> None:
    assert validate(GOOD, known=KNOWN, now_ms=NOW_MS).org_units == ("sales", "support")
    assert validate(dataclasses.replace(GOOD, org_units=(), link=""), known=KNOWN, now_ms=NOW_MS)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"tool": "chat"}, "tool", "unknown tool 'chat': it is not in the tool registry and no"),
        ({"tool": "Wiki"}, "tool", "tool must be a lowercase slug"),
        ({"tool": ""}, "tool", "tool is missing"),
        ({"id": "Wiki Roadshow"}, "id", "id must be a lowercase slug"),
        ({"id": "a" * 65}, "id", "id is 65 characters long; at most 64"),
        ({"kind": "party"}, "kind", "kind must be one of webinar, training, event, coaching,"),
        (
            {"end_ms": NOW_MS - 11 * DAY_MS},
            "end_ms",
            r"end \(2026-09-10T14:13:20Z\) is before start \(2026-09-11T14:13:20Z\)",
        ),
        ({"end_ms": NOW_MS + 90 * DAY_MS}, "end_ms", "lasts 100.0 days; at most 92"),
        (
            {"start_ms": NOW_MS + 360 * DAY_MS, "end_ms": NOW_MS + 367 * DAY_MS},
            "end_ms",
            "more than 366 days in the future",
        ),
        ({"start_ms": 1_000, "end_ms": 2_000}, "start_ms", "before 2000-01-01"),
        ({"org_units": ("sales", "marketing")}, "org_units[1]", "unknown org unit 'marketing'"),
        ({"org_units": ("sales", "sales")}, "org_units[1]", "org unit 'sales' is given twice"),
        ({"org_units": ("",)}, "org_units[0]", r"org_units\[0\] is empty"),
        ({"org_units": ("x" * 129,)}, "org_units[0]", "129 characters long; at most 128"),
        ({"org_units": ("sa\nles",)}, "org_units[0]", "control characters"),
        (
            {"org_units": tuple(f"u{i}" for i in range(MAX_ORG_UNITS + 1))},
            "org_units",
            "51 org units given; at most 50",
        ),
        ({"title": " "}, "title", "title is missing"),
        ({"title": "t" * 201}, "title", "title is 201 characters long; at most 200"),
        ({"title": "a\x07b"}, "title", "title contains control characters"),
        ({"link": "ftp://example.org/x"}, "link", "link must be an http:// or https:// URL"),
        ({"link": "https://" + "x" * 2050}, "link", "at most 2048"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    change: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidActivity, match=message) as caught:
        validate(dataclasses.replace(GOOD, **change), known=KNOWN, now_ms=NOW_MS)
    assert caught.value.field == field


def test_an_id_is_made_from_kind_tool_and_day_when_none_is_given() -> None:
    draft = dataclasses.replace(GOOD, id="")
    assert make_id(draft, taken=set()) == "roadshow-wiki-2026-09-11"
    taken = {"roadshow-wiki-2026-09-11", "roadshow-wiki-2026-09-11-2"}
    assert make_id(draft, taken=taken) == "roadshow-wiki-2026-09-11-3"


def test_registry_activities_take_dates_as_whole_days() -> None:
    registry = parse_registry(
        {
            "tools": {"wiki": {}},
            "org_units": ["sales"],
            "activities": [
                {
                    "id": "days",
                    "tool": "wiki",
                    "kind": "training",
                    "title": "Two days",
                    "start": "2026-03-02",
                    "end": dt.date(2026, 3, 3),
                },
                {
                    "id": "hours",
                    "tool": "wiki",
                    "kind": "webinar",
                    "title": "One hour",
                    "start": "2026-03-02T09:00:00Z",
                    "end": dt.datetime(2026, 3, 2, 10, 0),
                    "org_units": ["sales"],
                },
                {
                    "id": "day",
                    "tool": "wiki",
                    "kind": "event",
                    "title": "A day",
                    "start": "2026-03-04",
                },
            ],
        }
    )
    days, hours, day = registry.activities
    midnight = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp() * 1000)
    assert (days.start_ms, days.end_ms) == (midnight, midnight + 2 * DAY_MS - 1)
    assert (hours.start_ms, hours.end_ms) == (midnight + 9 * 3_600_000, midnight + 10 * 3_600_000)
    assert (day.start_ms, day.end_ms) == (midnight + 2 * DAY_MS, midnight + 3 * DAY_MS - 1)
    assert registry.org_units == ("sales",)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "party"}, "activity 'a1' field kind: Input should be 'webinar'"),
        ({"tool": "chat"}, "activity 'a1' field tool: 'chat' is not a tool of this registry"),
        ({"title": ""}, "activity 'a1' field title: String should have at least 1 character"),
        ({"start": "2026-02-30"}, "activity 'a1' field start"),
        ({"id": "Bad Id"}, "activity 'Bad Id' field id: String should match pattern"),
        ({"colour": "red"}, "activity 'a1' field colour: Extra inputs are not permitted"),
    ],
)
def test_registry_activity_errors_name_the_file_activity_and_field(
    entry: dict[str, object], message: str
) -> None:
    base = {"id": "a1", "tool": "wiki", "kind": "roadshow", "title": "T", "start": "2026-03-02"}
    with pytest.raises(ConfigError, match=message) as caught:
        parse_registry(
            {"tools": {"wiki": {}}, "activities": [{**base, **entry}]}, source="tools.yaml"
        )
    assert str(caught.value).startswith("tool registry tools.yaml: ")


def test_registry_activity_ids_are_unique() -> None:
    entry = {"id": "a1", "tool": "wiki", "kind": "roadshow", "title": "T", "start": "2026-03-02"}
    with pytest.raises(ConfigError, match="activity ids repeated: a1"):
        parse_registry({"tools": {"wiki": {}}, "activities": [entry, entry]})
