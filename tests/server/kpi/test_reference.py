"""Every built-in KPI equals the pure-Python reference: random event sets and edge cases."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.kpi.conftest import KpiStore
from tests.server.kpi.reference import DAY_MS, Ev, reference_rows
from uptake_server.registry import parse_registry

HOUR_MS = 3_600_000
# A fixed "now" with milliseconds, near the real clock (the store's TTLs use it).
NOW_MS = (int(time.time()) // 60) * 60_000 - 23 * 60_000 + 417
REGISTRY = parse_registry(
    {
        "tools": {
            "wiki": {
                "licensed_seats": 10,
                "core_actions": ["edit"],
                "features": ["search", "export"],
                "go_live": "2026-01-12",
                "adoption_target": 0.5,
            },
            "crm": {"licensed_seats": 50, "features": ["reports"]},
        },
        "kpis": [
            {
                "name": "editors",
                "help": "People who edited.",
                "kind": "users",
                "action": "edit",
                "window": "7d",
            },
            {
                "name": "chat_views_per_day",
                "help": "Chat views.",
                "kind": "events_per_day",
                "action": "view",
                "tool": "chat",
            },
        ],
    }
)

# Offsets that sit on and next to every boundary the definitions have.
_EDGES = [d * DAY_MS + e for d in (0, 1, 7, 14, 28) for e in (-1, 0, 1)]
# The starts of the current hour and of the hour 24 hours ago.
_EDGES += [d * DAY_MS + NOW_MS % HOUR_MS + e for d in (0, 1) for e in (-1, 0, 1)]
_offsets = st.one_of(
    st.sampled_from(_EDGES),
    st.integers(min_value=-4 * 60_000, max_value=45 * DAY_MS),
)
_events = st.builds(
    Ev,
    tool=st.sampled_from(["wiki", "chat"]),
    action=st.sampled_from(["view", "edit"]),
    user=st.integers(0, 9).map(lambda i: i.to_bytes(16, "big")),
    org_unit=st.sampled_from(["a", "b", ""]),
    feature=st.sampled_from(["", "search", "other"]),
    ts=_offsets.map(lambda o: NOW_MS - o),
)


def check(
    store: KpiStore, events: list[Ev], now_ms: int = NOW_MS, *, cuts: Sequence[int] = ()
) -> None:
    """Compare with the reference; `cuts` split the events into inserts rolled up apart."""
    store.reset()
    bounds = [0, *sorted(cuts), len(events)]
    for start, end in pairwise(bounds):
        store.insert(events[start:end])
        store.store.roll_up()  # each insert its own hourly rows, merged or not
    got = store.rows(REGISTRY, now_ms)
    want = reference_rows(events, REGISTRY, now_ms)
    assert set(got) == set(want), set(got) ^ set(want)
    for key, (num, den) in want.items():
        assert math.isclose(got[key][0], num, abs_tol=1e-6), (key, got[key], num)
        assert math.isclose(got[key][1], den, abs_tol=1e-6), (key, got[key], den)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(_events, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=3))
def test_every_kpi_matches_the_reference(
    kpi_store: KpiStore, events: list[Ev], cuts: list[int]
) -> None:
    check(kpi_store, events, cuts=[min(c, len(events)) for c in cuts])


def ev(
    offset_ms: int,
    *,
    user: int = 1,
    tool: str = "chat",
    action: str = "view",
    unit: str = "a",
    feature: str = "",
) -> Ev:
    return Ev(tool, action, user.to_bytes(16, "big"), unit, feature, NOW_MS - offset_ms)


def test_empty_store_gives_zeros_for_registered_tools_only(empty_store: KpiStore) -> None:
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("active_users", "crm", None, ("28d",))] == (0.0, 1.0)
    assert got[("feature_users", "crm", None, ("reports",))] == (0.0, 1.0)
    assert not any(key[1] == "chat" for key in got)
    check(empty_store, [])


def test_window_boundaries_are_exclusive_at_the_start_and_inclusive_at_now(
    empty_store: KpiStore,
) -> None:
    events = [
        ev(DAY_MS, user=1),  # exactly 24 h ago: outside 1d
        ev(DAY_MS - 1, user=2),  # 1 ms later: inside
        ev(0, user=3),  # at now: inside
        ev(-1, user=4),  # 1 ms in the future: outside every window
        ev(28 * DAY_MS, user=5),  # exactly 28 days ago: outside
    ]
    empty_store.insert(events)
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("active_users", "chat", None, ("1d",))][0] == 2
    assert got[("active_users", "chat", None, ("28d",))][0] == 3
    check(empty_store, events)


def test_hourly_rows_that_span_now_or_the_day_window_start_are_exact(
    empty_store: KpiStore,
) -> None:
    # The same (tool, person, org unit, action, feature) before and after a bound in
    # one hour: its hourly row spans the bound, so only its raw events can say which
    # side each event is on. Inserts rolled up apart leave partial hourly rows.
    events = [
        ev(2, user=1),  # 2 ms before now
        ev(DAY_MS - 1, user=2),  # 1 ms after the 24-hour window's start: inside
        ev(1, user=1),
        ev(-1, user=1),  # after now: in the same hourly row, outside every window
        ev(DAY_MS + 1, user=2),  # before the window's start, same hourly row
        ev(-2, user=3),  # only after now
    ]
    cuts = [2]
    check(empty_store, events, cuts=cuts)
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("chat_views_per_day", "chat", None, ())] == (3.0, 1.0)
    assert got[("active_users", "chat", None, ("1d",))][0] == 2
    assert got[("last_event_timestamp_seconds", "chat", None, ())][0] == (NOW_MS - 1) / 1000


def test_a_user_in_two_org_units_counts_once_in_the_latest(empty_store: KpiStore) -> None:
    events = [ev(3 * DAY_MS, unit="a"), ev(2 * DAY_MS, unit="b"), ev(5 * DAY_MS, unit="a")]
    empty_store.insert(events)
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("active_users", "chat", "b", ("7d",))][0] == 1
    assert ("active_users", "chat", "a", ("7d",)) not in got
    assert got[("active_users", "chat", None, ("7d",))][0] == 1
    check(empty_store, events)


def test_core_actions_narrow_activity(empty_store: KpiStore) -> None:
    events = [
        ev(HOUR_MS, user=1, tool="wiki", action="view"),
        ev(HOUR_MS, user=2, tool="wiki", action="edit"),
    ]
    empty_store.insert(events)
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("active_users", "wiki", None, ("1d",))][0] == 1
    check(empty_store, events)


def test_late_events_count_in_the_window_of_their_timestamp(empty_store: KpiStore) -> None:
    empty_store.insert([ev(2 * HOUR_MS, user=1)])
    assert empty_store.rows(REGISTRY, NOW_MS)[("active_users", "chat", None, ("7d",))][0] == 1
    late = [ev(6 * DAY_MS, user=2), ev(20 * DAY_MS, user=3)]
    empty_store.insert(late, received_ms=NOW_MS)
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("active_users", "chat", None, ("7d",))][0] == 2
    assert got[("active_users", "chat", None, ("28d",))][0] == 3


def test_lifecycle_states(empty_store: KpiStore) -> None:
    events = [
        ev(DAY_MS, user=1),  # new
        ev(10 * DAY_MS, user=2),
        ev(DAY_MS, user=2),  # returning
        ev(20 * DAY_MS, user=3),
        ev(DAY_MS, user=3),  # resurrected
        ev(10 * DAY_MS, user=4),  # dormant
        ev(14 * DAY_MS, user=5),  # exactly 14 days ago: not in the previous 7 days
        ev(7 * DAY_MS, user=6),  # exactly 7 days ago: previous 7 days, so dormant
    ]
    empty_store.insert(events)
    got = empty_store.rows(REGISTRY, NOW_MS)
    states = {k[3][0]: v[0] for k, v in got.items() if k[0] == "lifecycle_users" and k[1] == "chat"}
    assert states == {"new": 1, "returning": 1, "resurrected": 1, "dormant": 2}
    check(empty_store, events)


def test_retention_of_the_latest_complete_cohorts(empty_store: KpiStore) -> None:
    now = dt.datetime.fromtimestamp(NOW_MS / 1000, dt.UTC)
    monday = dt.datetime.combine(now.date() - dt.timedelta(days=now.weekday()), dt.time(), dt.UTC)
    cohort = int((monday - dt.timedelta(weeks=2)).timestamp() * 1000) + HOUR_MS
    back = cohort + 7 * DAY_MS
    events = [Ev("chat", "view", bytes([0] * 15 + [i]), "a", "", cohort) for i in range(4)] + [
        Ev("chat", "view", bytes([0] * 15 + [i]), "a", "", back) for i in range(3)
    ]
    empty_store.insert(events)
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got[("retention_ratio", "chat", None, ("1",))] == (3.0, 4.0)
    check(empty_store, events)


def test_backfill_rebuilds_the_aggregates_of_events_stored_before_the_views(
    empty_store: KpiStore,
) -> None:
    from uptake_server.kpi.backfill import backfill, pending_months

    events = [ev(o * HOUR_MS, user=o % 7, unit="ab"[o % 2]) for o in range(0, 900, 13)]
    (cutoff,) = empty_store.reader.query(
        "SELECT toUnixTimestamp64Milli(max(cutoff)) FROM kpi_backfill WHERE month = 0"
    )[0]
    empty_store.insert(events, received_ms=int(cutoff) - 1)
    for table in ("kpi_user_hours", "kpi_user_days", "kpi_first_seen"):
        empty_store.reader.command(f"TRUNCATE TABLE {table}")
    empty_store.reader.command("DELETE FROM kpi_backfill WHERE month != 0")
    assert pending_months(empty_store.reader)
    progress: list[int] = []
    assert backfill(empty_store.reader, progress=lambda m, i, n, e: progress.append(i)) == len(
        events
    )
    assert progress and pending_months(empty_store.reader) == []
    got = empty_store.rows(REGISTRY, NOW_MS)
    assert got == reference_rows(events, REGISTRY, NOW_MS) | {
        k: v for k, v in got.items() if k[0] == "last_event_timestamp_seconds"
    }
