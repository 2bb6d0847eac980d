"""Count each activity's groups from the KPI aggregates (`kpi_user_days`), in one statement.

Never from raw events: `kpi_user_days` holds one row per (tool, day, person, action,
org unit) and is kept by a materialized view. Per activity, every person with a
qualifying day of the tool from the first day read to the last day after is put in
the org unit of their latest such day (ties: the larger unit name), then in the
targeted group, the comparison group or neither. Each active day makes the person
7-day active on that day and the six after it; the statement sums, per group and
period, the distinct (person, day) pairs on the period's days and counts the
distinct people among them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from uptake_server.activities.effect import (
    ACTIVE_DAYS,
    Counts,
    Effect,
    Plan,
    effect_of,
    pending,
)
from uptake_server.kpi.definitions import UNKNOWN, QueryContext
from uptake_server.registry import Registry

TARGETED = "targeted"
COMPARISON = "comparison"
# Measured figures change only with late events: recomputed at most this often.
RECOMPUTE_SECONDS = 900.0


class Queryable(Protocol):
    """The store call measuring needs."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Any]: ...


def counts_query(plans: Sequence[Plan], *, registry: Registry) -> tuple[str, dict[str, Any]]:
    """Return the statement counting every plan's groups, and its parameters."""
    # Only for the KPIs' "qualifying event" predicate and its parameters, which do not
    # depend on the instant: the periods are fixed days.
    ctx = QueryContext(now=dt.datetime.now(dt.UTC), registry=registry)
    q = ctx.qualifying(tool="r.tool", action="r.action")
    p = [plan.periods for plan in plans]
    names = ("id", "tool", "first", "b0", "b1", "a0", "a1", "targets", "excluded")
    types: tuple[str, ...] = ("String", "String", "Date", "Date", "Date", "Date", "Date")
    types += ("Array(String)", "Array(String)")
    values: tuple[list[Any], ...] = (
        [plan.activity.id for plan in plans],
        [plan.activity.tool for plan in plans],
        [x.first_read for x in p],
        [x.before_first for x in p],
        [x.before_last for x in p],
        [x.after_first for x in p],
        [x.after_last for x in p],
        [list(plan.activity.org_units) for plan in plans],
        [list(plan.excluded) for plan in plans],
    )
    parameters: dict[str, Any] = {
        **ctx.parameters(),
        **{f"a_{n}": v for n, v in zip(names, values, strict=True)},
        "unknown": ["", UNKNOWN],
    }
    zipped = ", ".join(f"{{a_{n}:Array({t})}}" for n, t in zip(names, types, strict=True))
    columns = ", ".join(f"tupleElement(x, {i + 1}) AS {n}" for i, n in enumerate(names))
    sql = f"""
SELECT id, grp, if(d <= b1, 'before', 'after') AS period, unit,
       uniqExact(user_id, d) AS user_days, uniqExact(user_id) AS people
FROM (
    SELECT id, user_id, unit, b1, addDays(day, o) AS d,
           multiIf(length(targets) = 0 OR has(targets, unit), '{TARGETED}',
                   NOT has({{unknown:Array(String)}}, unit) AND NOT has(excluded, unit),
                   '{COMPARISON}', '') AS grp,
           b0, a0, a1
    FROM (
        SELECT p.id AS id, r.user_id AS user_id,
               argMax(r.org_unit, (r.day, r.org_unit)) AS unit,
               groupUniqArray(r.day) AS days,
               any(p.b0) AS b0, any(p.b1) AS b1, any(p.a0) AS a0, any(p.a1) AS a1,
               any(p.targets) AS targets, any(p.excluded) AS excluded
        FROM kpi_user_days AS r
        INNER JOIN (
            SELECT {columns} FROM (SELECT arrayJoin(arrayZip({zipped})) AS x)
        ) AS p ON r.tool = p.tool
        WHERE r.tool IN {{a_tool:Array(String)}}
          AND r.day >= arrayMin({{a_first:Array(Date)}}) AND r.day <= arrayMax({{a_a1:Array(Date)}})
          AND r.day >= p.first AND r.day <= p.a1 AND {q}
        GROUP BY id, user_id
    )
    ARRAY JOIN days AS day
    ARRAY JOIN range({ACTIVE_DAYS}) AS o
)
WHERE grp != '' AND ((d >= b0 AND d <= b1) OR (d >= a0 AND d <= a1))
GROUP BY id, grp, period, unit"""
    return sql, parameters


def count_groups(
    store: Queryable, plans: Sequence[Plan], *, registry: Registry
) -> dict[str, tuple[Counts, Counts]]:
    """Return (targeted, comparison) counts per activity id of the plans."""
    # Per (activity, group): totals, and per org unit the people before and after.
    # Each person is in one unit, so the units' counts add up to the group's.
    totals: dict[tuple[str, str], dict[str, int]] = {}
    per_unit: dict[tuple[str, str], dict[str, list[int]]] = {}
    if plans:
        sql, parameters = counts_query(plans, registry=registry)
        for activity_id, grp, period, unit, user_days, people in store.query(sql, parameters):
            cell = totals.setdefault((activity_id, grp), {})
            for name, value in ((f"user_days_{period}", user_days), (f"people_{period}", people)):
                cell[name] = cell.get(name, 0) + int(value)
            unit_people = per_unit.setdefault((activity_id, grp), {}).setdefault(unit, [0, 0])
            unit_people[0 if period == "before" else 1] = int(people)
    out = {}
    for plan in plans:
        pair = []
        for grp in (TARGETED, COMPARISON):
            key = (plan.activity.id, grp)
            units = tuple((u, b, a) for u, (b, a) in sorted(per_unit.get(key, {}).items()))
            pair.append(Counts(**totals.get(key, {}), units=units))
        out[plan.activity.id] = (pair[0], pair[1])
    return out


class Measurer:
    """Measure activities at a given instant, keeping measured counts for a while."""

    def __init__(
        self,
        store: Queryable,
        *,
        registry: Registry,
        k: int,
        recompute_seconds: float = RECOMPUTE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._registry = registry
        self._k = k
        self._recompute = recompute_seconds
        self._clock = clock
        self._cache: dict[Plan, tuple[float, tuple[Counts, Counts]]] = {}

    def measure(self, plans: Sequence[Plan], *, now: dt.datetime) -> list[Effect]:
        """Return the effect of every plan at `now` (pending ones are not counted)."""
        effects: dict[str, Effect] = {}
        due = []
        moment = self._clock()
        for plan in plans:
            waiting = pending(plan, now=now)
            if waiting is not None:
                effects[plan.activity.id] = waiting
                continue
            cached = self._cache.get(plan)
            if cached is None or moment - cached[0] >= self._recompute:
                due.append(plan)
        counted = count_groups(self._store, due, registry=self._registry)
        for plan in due:
            self._cache[plan] = (moment, counted[plan.activity.id])
        live = set(plans)
        self._cache = {p: v for p, v in self._cache.items() if p in live}
        for plan in plans:
            if plan.activity.id not in effects:
                targeted, comparison = self._cache[plan][1]
                effects[plan.activity.id] = effect_of(
                    plan, targeted=targeted, comparison=comparison, k=self._k
                )
        return [effects[plan.activity.id] for plan in plans]
