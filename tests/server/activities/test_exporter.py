"""The activity metric families: recent starts for annotations, uplift once measured."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.activities.conftest import EffectStore
from tests.server.activities.histories import DAY, NOW, activity, history
from uptake_server.activities.effect import MEASURED
from uptake_server.activities.exporter import START_FAMILY, UPLIFT_FAMILY, ActivityCollector
from uptake_server.activities.model import Activity
from uptake_server.activities.store import ActivityStore
from uptake_server.registry import parse_registry

REGISTRY = parse_registry({"tools": {"wiki": {}}, "org_units": ["north", "south", "east"]})


def samples(registry: CollectorRegistry) -> dict[str, dict[tuple[str, ...], float]]:
    """Return the activity samples of an exposition, by family and label values."""
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[str, ...], float]] = {START_FAMILY: {}, UPLIFT_FAMILY: {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in out:
                names = ("tool", "kind", "activity")
                labels = tuple(sample.labels[n] for n in names if n in sample.labels)
                out[sample.name][labels] = sample.value
    return out


def record(store: EffectStore, activities: list[Activity]) -> None:
    book = ActivityStore(store.store, registry=REGISTRY)
    for a in activities:
        book.add(a, source="api")


def collector(store: EffectStore, **limits: int) -> tuple[ActivityCollector, CollectorRegistry]:
    registry = CollectorRegistry()
    made = ActivityCollector(
        store.store,
        store.reader,
        registry=REGISTRY,
        min_group_size=5,
        window_days=limits.get("window_days", 90),
        max_activities=limits.get("max_activities", 100),
    )
    registry.register(made)
    return made, registry


def test_recent_activities_are_marked_and_measured_ones_have_an_uplift(
    empty_store: EffectStore,
) -> None:
    roadshow = activity("roadshow", days_ago=30, units=("north",), length_days=6)
    webinar = activity("webinar", days_ago=10, units=("south",), kind="webinar")
    tiny = activity("tiny", days_ago=40, units=("east",), kind="coaching")
    old = activity("old", days_ago=95, units=("north",))
    upcoming = activity("upcoming", days_ago=-3, units=("north",))
    events = history(
        seed=1,
        units={"north": 60, "south": 60, "west": 60, "east": 3},
        days=70,
        lift_unit="north",
        lift=0.4,
        lift_days_ago=30,
    )
    empty_store.insert(events)
    record(empty_store, [roadshow, webinar, tiny, old, upcoming])
    made, registry = collector(empty_store)
    assert made.refresh(now=NOW) == 3
    got = samples(registry)
    assert got[START_FAMILY] == {
        ("wiki", a.kind, a.id): a.start_ms / 1000 for a in (roadshow, webinar, tiny)
    }
    effects = empty_store.effects([roadshow, webinar, tiny, old], REGISTRY, k=5, now=NOW)
    assert effects["roadshow"].status == MEASURED
    # The webinar's 14 days after are not over; the coaching's unit has three people.
    assert (effects["webinar"].status, effects["tiny"].status) == ("pending", "withheld")
    assert got[UPLIFT_FAMILY] == {("wiki", "roadshow"): effects["roadshow"].uplift}
    assert got[UPLIFT_FAMILY][("wiki", "roadshow")] == pytest.approx(0.4, abs=0.05)


def test_the_count_is_bounded_and_the_oldest_drop_first(empty_store: EffectStore) -> None:
    recorded = [activity(f"a{n}", days_ago=n, units=("north",)) for n in range(1, 6)]
    record(empty_store, recorded)
    made, registry = collector(empty_store, max_activities=3, window_days=4)
    assert made.refresh(now=NOW) == 3
    assert {labels[2] for labels in samples(registry)[START_FAMILY]} == {"a1", "a2", "a3"}
    # Later, with the window moved on, the same bound keeps the newest still in it.
    made.refresh(now=NOW + DAY)
    assert {labels[2] for labels in samples(registry)[START_FAMILY]} == {"a1", "a2"}
