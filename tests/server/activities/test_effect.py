"""The effect of activities, from the store, against the independent reference.

Tolerance: on generated histories with a known lift L (L x N more people of the
targeted unit start right after the activity), the measured uplift is within 0.05
of L (daily activity drawn at random, 150 people per unit); with everyone active
every day it is exactly L.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.activities.conftest import EffectStore
from tests.server.activities.histories import DAY, NOW, activity, history, ms, user_id
from tests.server.activities.reference import RefEffect, reference_effects
from tests.server.kpi.reference import Ev
from uptake_server.activities.effect import (
    MEASURED,
    NO_COMPARISON,
    PENDING,
    WITHHELD,
    Effect,
    periods_of,
    plan_all,
)
from uptake_server.activities.model import Activity
from uptake_server.registry import parse_registry

TOLERANCE = 0.05
K = 5
REGISTRY = parse_registry({"tools": {"wiki": {}, "crm": {"core_actions": ["edit"]}}})
UNITS = {"north": 150, "south": 150, "east": 150}


def check_against_reference(
    store: EffectStore,
    events: list[Ev],
    activities: list[Activity],
    *,
    k: int = K,
    now: dt.datetime = NOW,
) -> dict[str, Effect]:
    """Load events, measure, and assert every figure equals the reference's."""
    store.reset()
    store.insert(events)
    got = store.effects(activities, REGISTRY, k=k, now=now)
    want = reference_effects(activities, events, REGISTRY, k=k, now=now)
    for activity_id, ref in want.items():
        effect = got[activity_id]
        assert effect.status == ref.status, (activity_id, effect.reason, ref)
        assert set(effect.plan.overlapping) == ref.overlapping, activity_id
        if ref.uplift is None:
            assert effect.uplift is None, activity_id
        else:
            assert effect.uplift is not None
            assert math.isclose(effect.uplift, ref.uplift, abs_tol=1e-9), (effect, ref)
        if ref.status != PENDING:
            _same_groups(effect, ref, k=k)
    return got


def _same_groups(effect: Effect, ref: RefEffect, *, k: int) -> None:
    for shown, raw in ((effect.targeted, ref.targeted), (effect.comparison, ref.comparison)):
        assert raw is not None
        if any(0 < n < k for n in raw.people):
            assert shown.withheld and (shown.people_before, shown.mean_before) == (0, 0.0)
            continue
        assert (shown.people_before, shown.people_after) == raw.people
        assert math.isclose(shown.mean_before, raw.means[0], abs_tol=1e-9)
        assert math.isclose(shown.mean_after, raw.means[1], abs_tol=1e-9)


@pytest.mark.parametrize("lift", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_known_lift_is_recovered(empty_store: EffectStore, lift: float, seed: int) -> None:
    # A week-long roadshow: the people it wins start on its first day, so by the first
    # day after it each of them is as likely to be 7-day active as anyone.
    roadshow = activity("roadshow", days_ago=30, units=("north",), length_days=6)
    events = history(
        seed=seed, units=UNITS, days=55, lift_unit="north", lift=lift, lift_days_ago=30
    )
    effect = check_against_reference(empty_store, events, [roadshow])["roadshow"]
    assert effect.status == MEASURED, effect.reason
    assert effect.uplift is not None
    print(f"lift {lift:.2f} seed {seed}: measured {effect.uplift:+.4f}")
    assert abs(effect.uplift - lift) <= TOLERANCE
    assert effect.comparison_units == ("east", "south")


def test_with_everyone_active_every_day_the_lift_is_exact(empty_store: EffectStore) -> None:
    roadshow = activity("roadshow", days_ago=20, units=("north",), length_days=2)
    events = history(
        seed=3,
        units={"north": 40, "south": 30},
        days=45,
        rate=1.0,
        weekend_rate=1.0,
        lift_unit="north",
        lift=0.25,
        lift_days_ago=17,
    )
    effect = check_against_reference(empty_store, events, [roadshow])["roadshow"]
    assert effect.uplift == pytest.approx(0.25, abs=1e-12)
    assert (effect.targeted.mean_before, effect.targeted.mean_after) == (40.0, 50.0)
    assert (effect.comparison.people_before, effect.comparison.people_after) == (30, 30)


def test_no_lift_reads_as_no_lift_even_when_everyone_grows(empty_store: EffectStore) -> None:
    webinar = activity("webinar", days_ago=25, units=("south", "east"), kind="webinar")
    # The whole organisation picks the tool up over the weeks: both groups grow alike.
    events = history(seed=4, units=UNITS, days=50, rate=0.45)
    later = {"north": 60, "south": 60, "east": 60}
    events += history(seed=5, units=later, days=30, rate=0.45, cohort="later-")
    effect = check_against_reference(empty_store, events, [webinar])["webinar"]
    assert effect.status == MEASURED
    assert effect.targeted.change is not None and effect.targeted.change > 0.2
    assert effect.uplift is not None and abs(effect.uplift) <= TOLERANCE


def test_overlapping_activities_are_reported_as_such(empty_store: EffectStore) -> None:
    roadshow = activity("roadshow", days_ago=30, units=("north",))
    training = activity("training", days_ago=24, units=("north", "south"), kind="training")
    elsewhere = activity("elsewhere", days_ago=27, units=("east",), kind="coaching")
    apart = activity("apart", days_ago=75, units=("north",))
    other_tool = activity("crm-webinar", days_ago=30, units=("north",), tool="crm")
    events = history(seed=6, units={**UNITS, "west": 100}, days=100)
    activities = [roadshow, training, elsewhere, apart, other_tool]
    got = check_against_reference(empty_store, events, activities)
    assert got["roadshow"].plan.overlapping == ("training",)
    assert got["training"].plan.overlapping == ("roadshow",)
    assert "overlapping training" in got["roadshow"].reason
    # Windows overlap but units do not: not overlapping, yet kept out of the comparison.
    assert got["elsewhere"].plan.overlapping == ()
    assert got["roadshow"].comparison_units == ("west",)
    assert got["apart"].plan.overlapping == ()
    assert got["crm-webinar"].plan.overlapping == ()


def test_an_overlapping_activity_for_every_unit_leaves_no_comparison(
    empty_store: EffectStore,
) -> None:
    roadshow = activity("roadshow", days_ago=30, units=("north",))
    mail = activity("mail", days_ago=35, units=(), kind="communication")
    events = history(seed=7, units=UNITS, days=60)
    got = check_against_reference(empty_store, events, [roadshow, mail])
    assert got["roadshow"].status == NO_COMPARISON
    assert got["roadshow"].plan.overlapping == ("mail",)
    assert got["mail"].status == NO_COMPARISON
    assert "every org unit" in got["mail"].reason


def test_groups_below_the_minimum_group_size_are_withheld(empty_store: EffectStore) -> None:
    roadshow = activity("roadshow", days_ago=25, units=("tiny",))
    events = history(seed=8, units={"tiny": 4, "south": 50}, days=50)
    got = check_against_reference(empty_store, events, [roadshow])
    effect = got["roadshow"]
    assert effect.status == WITHHELD and effect.uplift is None
    assert effect.targeted.withheld and effect.targeted.people_before == 0
    assert "fewer than k=5" in effect.reason
    assert not effect.comparison.withheld and effect.comparison.people_before == 50
    # With k = 3, the same four people are enough.
    assert check_against_reference(empty_store, events, [roadshow], k=3)["roadshow"].uplift


def test_small_comparison_units_count_but_are_not_named(empty_store: EffectStore) -> None:
    roadshow = activity("roadshow", days_ago=25, units=("north",))
    events = history(seed=11, units={"north": 30, "south": 30, "east": 2}, days=50, rate=1.0)
    effect = check_against_reference(empty_store, events, [roadshow])["roadshow"]
    assert effect.comparison.people_before == 32
    assert effect.comparison_units == ("south",)


def test_pending_until_the_fourteen_days_after_are_over(empty_store: EffectStore) -> None:
    roadshow = activity("roadshow", days_ago=20, units=("north",), length_days=3)
    events = history(seed=9, units=UNITS, days=45)
    ready = periods_of(roadshow).measurable_at
    assert ready == dt.datetime.combine(NOW.date() - 2 * DAY, dt.time(), dt.UTC)
    before = check_against_reference(
        empty_store, events, [roadshow], now=ready - dt.timedelta(milliseconds=1)
    )
    assert before["roadshow"].status == PENDING
    assert "measurable from" in before["roadshow"].reason
    after = check_against_reference(empty_store, events, [roadshow], now=ready)
    assert after["roadshow"].status == MEASURED


def test_people_count_in_the_org_unit_of_their_latest_day(empty_store: EffectStore) -> None:
    roadshow = activity("roadshow", days_ago=20, units=("north",))
    events = history(seed=10, units={"north": 20, "south": 20}, days=45, rate=1.0)
    # Five people of south move to north after the activity: they count in north, both
    # before and after, so moving is no lift.
    movers = [user_id(f"south-{i}") for i in range(5)]
    moved = [
        dataclasses.replace(e, org_unit="north")
        if e.user in movers and e.ts > ms(NOW - 10 * DAY)
        else e
        for e in events
    ]
    effect = check_against_reference(empty_store, moved, [roadshow])["roadshow"]
    assert effect.targeted.people_before == 25
    assert effect.uplift == pytest.approx(0.0, abs=1e-12)


_UNITS = ("north", "south", "east")


@st.composite
def _event(draw: st.DrawFn) -> Ev:
    person = draw(st.integers(0, 39))
    # Most people stay in their unit; some move, and some events carry no unit.
    unit = draw(st.sampled_from([_UNITS[person % 3]] * 8 + ["south", ""]))
    return Ev(
        tool=draw(st.sampled_from(["wiki", "crm"])),
        action=draw(st.sampled_from(["view", "edit"])),
        user=user_id(f"p{person}"),
        org_unit=unit,
        feature="",
        # sampled_from: uniform over the days, where integers() favours small values.
        ts=ms(NOW - draw(st.sampled_from(range(61))) * DAY) - draw(st.integers(0, 86_399_999)),
    )


_activity = st.builds(
    lambda n, tool, ago, length, units: activity(
        f"a{n}", days_ago=ago, units=units, length_days=length, tool=tool
    ),
    n=st.integers(0, 10**6),
    tool=st.sampled_from(["wiki", "crm"]),
    ago=st.integers(5, 45),
    length=st.integers(0, 3),
    # () targets every org unit.
    units=st.sampled_from([(), *((u,) for u in _UNITS), *itertools.combinations(_UNITS, 2)]),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(_event(), min_size=300, max_size=800),
    activities=st.lists(_activity, min_size=1, max_size=3, unique_by=lambda a: a.id),
    k=st.sampled_from([3, 5]),
)
def test_random_histories_match_the_reference(
    effect_store: EffectStore, events: list[Ev], activities: list[Activity], k: int
) -> None:
    check_against_reference(effect_store, events, activities, k=k)


def test_plans_never_compare_with_contaminated_units() -> None:
    roadshow = activity("roadshow", days_ago=30, units=("north",))
    training = activity("training", days_ago=40, units=("south",), kind="training")
    plans = {p.activity.id: p for p in plan_all([roadshow, training])}
    assert plans["roadshow"].excluded == ("north", "south")
    assert plans["roadshow"].overlapping == ()
    assert plans["roadshow"].comparable
