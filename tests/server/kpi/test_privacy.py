"""Suppression: no exported series, nor any sum or difference of them, reveals a small group."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptake_server.kpi.builtin import BUILTIN_KPIS
from uptake_server.kpi.definitions import OTHER
from uptake_server.kpi.privacy import Row, fold_units, protect

K = 5
LEVEL = {"1d": 3, "7d": 2, "28d": 1}


@dataclass(frozen=True)
class Person:
    """What the series can say about one person: unit, activity level, lifecycle."""

    unit: str
    level: int  # 1: 28 days only, 2: 7 days not 1, 3: 1 day
    prev: bool
    new: bool


def rows_for(people: Sequence[Person], tool: str = "t") -> list[Row]:
    """Return the raw rows the SQL would give for these people."""
    rows = []
    for w, lv in LEVEL.items():
        rows.append(Row("active_users", tool, None, (w,), sum(p.level >= lv for p in people), 1))
        for unit in {p.unit for p in people}:
            n = sum(p.level >= lv and p.unit == unit for p in people)
            rows.append(Row("active_users", tool, unit, (w,), n, 1))
    for state in ("new", "returning", "resurrected", "dormant"):
        rows.append(
            Row("lifecycle_users", tool, None, (state,), sum(map(_state(state), people)), 1)
        )
    a1 = sum(p.level >= 3 for p in people)
    rows.append(Row("stickiness_ratio", tool, None, (), a1, len(people)))
    return rows


def _state(state: str):  # type: ignore[no-untyped-def]
    return {
        "new": lambda p: p.level >= 2 and p.new,
        "returning": lambda p: p.level >= 2 and p.prev and not p.new,
        "resurrected": lambda p: p.level >= 2 and not p.prev and not p.new,
        "dormant": lambda p: p.prev and p.level < 2,
    }[state]


def indicator(labels: dict[str, str], family: str, folded: set[str]):  # type: ignore[no-untyped-def]
    """Return the person -> 0/1 function an exported count series counts."""
    if family == "uptake_active_users":
        return lambda p: p.level >= LEVEL[labels["window"]]
    if family == "uptake_org_unit_active_users":
        unit = labels["org_unit"]
        member = (lambda p: p.unit in folded) if unit == OTHER else (lambda p: p.unit == unit)
        return lambda p: member(p) and p.level >= LEVEL[labels["window"]]
    if family == "uptake_lifecycle_users":
        return _state(labels["state"])
    return None


def feasible_types(units: Sequence[str]) -> list[Person]:
    """Return every kind of person the definitions allow."""
    kinds = []
    for unit, level, prev, new in itertools.product(units, (1, 2, 3), (False, True), (False, True)):
        if new and (level < 2 or prev):
            continue
        kinds.append(Person(unit, level, prev, new))
    return kinds


def revealed_groups(
    people: Sequence[Person], k: int, *, max_terms: int = 4, rows: list[Row] | None = None
) -> list[str]:
    """Search sums and differences of exported counts that always count a set of people.

    A combination reveals a group when, for every kind of person the definitions
    allow, it counts that person 0 or 1 times (so it is the size of a group in
    any data), and in this data the group has 1..k-1 people.
    """
    rows = rows_for(people) if rows is None else rows
    protected = protect(rows, kpis=BUILTIN_KPIS, k=k, max_org_units=200, max_tools=10)
    units = sorted({p.unit for p in people})
    cells = {
        u: [sum(p.level >= lv and p.unit == u for p in people) for lv in (3, 2, 1)]
        for u in units
        if any(r.org_unit == u for r in rows)
    }
    folded = set(fold_units(cells, k=k, max_org_units=200))
    kinds = feasible_types(units)
    series = []
    for s in protected.series:
        f = indicator(dict(s.labels), s.family, folded)
        if f is not None:
            assert s.value == sum(map(f, people)), s  # the export counts what we think
            series.append((s, [int(f(kind)) for kind in kinds]))
    found = []
    for size in range(1, max_terms + 1):
        for combo in itertools.combinations(series, size):
            for signs in itertools.product((1, -1), repeat=size):
                if signs[0] != 1:
                    continue
                weights = [
                    sum(sg * vec[i] for sg, (_, vec) in zip(signs, combo, strict=True))
                    for i in range(len(kinds))
                ]
                if any(w not in (0, 1) for w in weights):
                    continue
                group = {kind for kind, w in zip(kinds, weights, strict=True) if w}
                count = sum(p in group for p in people)
                if 0 < count < k:
                    found.append(
                        " ".join(
                            f"{'+-'[sg < 0]}{s.family}{dict(s.labels)}"
                            for sg, (s, _) in zip(signs, combo, strict=True)
                        )
                    )
    return found


_people = st.lists(
    st.builds(
        Person,
        unit=st.sampled_from(["a", "b", "c", "d"]),
        level=st.integers(1, 3),
        prev=st.booleans(),
        new=st.booleans(),
    ).filter(lambda p: not (p.new and (p.level < 2 or p.prev))),
    max_size=40,
)


@settings(max_examples=25, deadline=None)
@given(people=_people)
def test_no_combination_of_exported_series_reveals_a_small_group(people: list[Person]) -> None:
    assert revealed_groups(people, K, max_terms=3) == []


def test_adversarial_search_finds_a_leak_without_complementary_suppression() -> None:
    # The search itself must be able to fail: a unit of 2 that never reaches the
    # exporter's folding (as if it were dropped instead of folded) is revealed by
    # the per-tool total minus the visible units.
    people = [Person("a", 1, False, False)] * 6 + [Person("b", 1, False, False)] * 7
    people += [Person("c", 1, False, False)] * 2
    leaky = [r for r in rows_for(people) if r.org_unit != "c"]
    found = revealed_groups(people, K, max_terms=3, rows=leaky)
    assert any("org_unit': 'a'" in f and "org_unit': 'b'" in f for f in found), found
    assert revealed_groups(people, K) == []


def test_small_units_fold_and_the_smallest_visible_unit_joins_them() -> None:
    cells = {"big": [10, 20, 30], "mid": [6, 12, 18], "tiny": [0, 0, 2]}
    assert fold_units(cells, k=5, max_org_units=200) == {
        "tiny": "min_group_size",
        "mid": "complementary",
    }


def test_cardinality_guard_folds_all_but_the_largest_units() -> None:
    cells = {f"u{i}": [0, 0, 10 + i] for i in range(6)}
    folded = fold_units(cells, k=5, max_org_units=4)
    assert folded == {"u0": "cardinality", "u1": "cardinality"}
    rows = [Row("active_users", "t", u, ("28d",), c[2], 1) for u, c in cells.items()]
    rows += [Row("active_users", "t", None, ("28d",), sum(c[2] for c in cells.values()), 1)]
    out = protect(rows, kpis=BUILTIN_KPIS, k=5, max_org_units=4, max_tools=10)
    assert out.suppressed["cardinality"] == 2
    units = {dict(s.labels).get("org_unit") for s in out.series}
    assert units == {None, "u2", "u3", "u4", "u5", OTHER}


def test_ratios_of_withheld_counts_are_withheld() -> None:
    people = [Person("a", 3, False, False)] * 2 + [Person("a", 1, False, False)] * 10
    out = protect(rows_for(people), kpis=BUILTIN_KPIS, k=K, max_org_units=200, max_tools=10)
    families = {s.family for s in out.series}
    assert "uptake_stickiness_ratio" not in families
    assert "uptake_active_users" in families


def test_unregistered_tools_are_bounded() -> None:
    rows = [Row("active_users", f"t{i}", None, ("28d",), 10 + i, 1) for i in range(5)]
    out = protect(rows, kpis=BUILTIN_KPIS, k=5, max_org_units=200, max_tools=3, registered={"t0"})
    assert {dict(s.labels)["tool"] for s in out.series} == {"t0", "t2", "t3", "t4"}
    assert out.suppressed["cardinality"] == 1


@pytest.mark.parametrize("seed", range(3))
def test_random_organisations_with_many_units(seed: int) -> None:
    rnd = random.Random(seed)
    people = [
        Person(rnd.choice("abcdef"), rnd.randint(1, 3), False, False)
        for _ in range(rnd.randint(20, 60))
    ]
    assert revealed_groups(people, K, max_terms=3) == []
