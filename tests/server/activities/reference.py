"""An independent pure-Python reference for the effect of adoption activities.

It reads docs/activities.md literally, from raw events and day by day: no
aggregates, no (person, day) pair counting, no shared code with the server
besides the Activity record, so the SQL and the planning are checked against the
plain meaning of the definitions.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from tests.server.kpi.reference import Ev
from uptake_server.activities.model import Activity
from uptake_server.registry import Registry

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class RefGroup:
    """A group's raw figures: people per period and mean 7-day active users per period."""

    people: tuple[int, int]
    means: tuple[float, float]


@dataclass(frozen=True)
class RefEffect:
    """What the reference says about one activity."""

    status: str  # pending, measured, withheld, no_comparison
    uplift: float | None
    overlapping: frozenset[str]
    targeted: RefGroup | None
    comparison: RefGroup | None


def _day(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + i * DAY for i in range((last - first).days + 1)]


def _window(a: Activity) -> tuple[dt.date, dt.date]:
    return _day(a.start_ms) - 14 * DAY, _day(a.end_ms) + 14 * DAY


def reference_effects(
    activities: list[Activity], events: list[Ev], registry: Registry, *, k: int, now: dt.datetime
) -> dict[str, RefEffect]:
    """Return the effect of every activity as docs/activities.md defines it."""

    def qualifies(e: Ev) -> bool:
        spec = registry.tool(e.tool)
        return spec is None or not spec.core_actions or e.action in spec.core_actions

    out = {}
    for a in activities:
        lo, hi = _window(a)
        others = [
            b
            for b in activities
            if b.id != a.id and b.tool == a.tool and _window(b)[0] <= hi and lo <= _window(b)[1]
        ]
        overlapping = frozenset(
            b.id
            for b in others
            if not a.org_units or not b.org_units or set(a.org_units) & set(b.org_units)
        )
        before = _days(_day(a.start_ms) - 14 * DAY, _day(a.start_ms) - DAY)
        after = _days(_day(a.end_ms) + DAY, _day(a.end_ms) + 14 * DAY)
        ready = dt.datetime.combine(after[-1] + DAY, dt.time(), dt.UTC)
        if now < ready:
            out[a.id] = RefEffect("pending", None, overlapping, None, None)
            continue
        # Each person's qualifying days of the tool in the span, and their last unit.
        first_read = before[0] - 6 * DAY
        days_of: dict[bytes, set[dt.date]] = defaultdict(set)
        latest: dict[bytes, tuple[dt.date, str]] = {}
        for e in events:
            day = _day(e.ts)
            if e.tool != a.tool or not qualifies(e) or not first_read <= day <= after[-1]:
                continue
            days_of[e.user].add(day)
            latest[e.user] = max(latest.get(e.user, (day, e.org_unit)), (day, e.org_unit))
        contaminated = set(a.org_units).union(*(b.org_units for b in others))
        targeted, comparison = set(), set()
        for user, (_, unit) in latest.items():
            if not a.org_units or unit in a.org_units:
                targeted.add(user)
            elif unit not in ("", "(unknown)") and unit not in contaminated:
                comparison.add(user)

        t = _figures(targeted, (before, after), days_of)
        c = _figures(comparison, (before, after), days_of)
        if not a.org_units or any(not b.org_units for b in others):
            status, uplift = "no_comparison", None
        elif min(*t.people, *c.people) < k or 0 in (t.means[0], c.means[0]):
            status, uplift = "withheld", None
        else:
            change_t = t.means[1] / t.means[0] - 1
            change_c = c.means[1] / c.means[0] - 1
            status, uplift = "measured", change_t - change_c
        out[a.id] = RefEffect(status, uplift, overlapping, t, c)
    return out


def _figures(
    members: set[bytes],
    periods: tuple[list[dt.date], list[dt.date]],
    days_of: dict[bytes, set[dt.date]],
) -> RefGroup:
    """Count a group's 7-day active people on each day of each period."""
    people, means = [], []
    for period in periods:
        counted: set[bytes] = set()
        total = 0
        for day in period:
            active = {u for u in members if any(day - i * DAY in days_of[u] for i in range(7))}
            total += len(active)
            counted |= active
        people.append(len(counted))
        means.append(total / 14)
    return RefGroup((people[0], people[1]), (means[0], means[1]))
