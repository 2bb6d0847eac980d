"""The effect of an activity: periods, overlaps, and the difference in differences (pure).

Definitions (docs/activities.md, "How the effect is computed"): the 14 UTC days before
the activity's first day and the 14 after its last day; on each of those days the
7-day active users of a group; their mean per period; the relative change of the
targeted group minus that of the comparison group. Counts come in from the store
(`activities.measure`); this module decides what may be reported under the minimum
group size and what overlaps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from uptake_server.activities.model import Activity

PERIOD_DAYS = 14
ACTIVE_DAYS = 7

PENDING = "pending"
MEASURED = "measured"
WITHHELD = "withheld"
NO_COMPARISON = "no_comparison"
STATUSES = (PENDING, MEASURED, WITHHELD, NO_COMPARISON)


@dataclass(frozen=True, slots=True)
class Periods:
    """The days an activity is measured on (UTC dates, inclusive)."""

    before_first: dt.date
    before_last: dt.date
    after_first: dt.date
    after_last: dt.date

    @property
    def first_read(self) -> dt.date:
        """Return the earliest day whose activity counts: the 7-day window of the first day."""
        return self.before_first - dt.timedelta(days=ACTIVE_DAYS - 1)

    @property
    def measurable_at(self) -> dt.datetime:
        """Return when the last day after the activity is over (00:00 UTC the day after)."""
        return dt.datetime.combine(self.after_last + dt.timedelta(days=1), dt.time(), dt.UTC)

    def overlaps(self, other: Periods) -> bool:
        """Tell whether two measurement windows (before_first to after_last) share a day."""
        return self.before_first <= other.after_last and other.before_first <= self.after_last


def periods_of(activity: Activity) -> Periods:
    """Return the 14 days before the activity's first day and the 14 after its last day."""
    start, end = activity.start_day, activity.end_day
    return Periods(
        before_first=start - dt.timedelta(days=PERIOD_DAYS),
        before_last=start - dt.timedelta(days=1),
        after_first=end + dt.timedelta(days=1),
        after_last=end + dt.timedelta(days=PERIOD_DAYS),
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """How one activity is measured: its periods, overlaps and the units left to compare with.

    `excluded` are the org units kept out of the comparison group: the activity's own
    and those of every activity of the same tool whose measurement window overlaps.
    """

    activity: Activity
    periods: Periods
    overlapping: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    comparable: bool = True


def plan_all(activities: Sequence[Activity]) -> list[Plan]:
    """Return the plan of every activity, finding overlaps among activities of the same tool."""
    periods = {a.id: periods_of(a) for a in activities}
    plans = []
    for activity in activities:
        mine = periods[activity.id]
        near = [
            other
            for other in activities
            if other.id != activity.id
            and other.tool == activity.tool
            and periods[other.id].overlaps(mine)
        ]
        overlapping = tuple(sorted(o.id for o in near if _units_meet(o, activity)))
        excluded = sorted({u for a in (activity, *near) for u in a.org_units})
        comparable = not activity.all_units and not any(o.all_units for o in near)
        plans.append(Plan(activity, mine, overlapping, tuple(excluded), comparable))
    return plans


def _units_meet(a: Activity, b: Activity) -> bool:
    return a.all_units or b.all_units or bool(set(a.org_units) & set(b.org_units))


@dataclass(frozen=True, slots=True)
class Counts:
    """What the store counted for one group of one activity.

    `user_days_*` is the sum over the period's days of that day's 7-day active users
    (the number of distinct (person, day) pairs); `people_*` the distinct people
    counted on at least one day of the period; `units` the same people per org unit,
    as (unit, people before, people after).
    """

    people_before: int = 0
    people_after: int = 0
    user_days_before: int = 0
    user_days_after: int = 0
    units: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    """A group's figures as they may be reported (all zero when withheld)."""

    people_before: int = 0
    people_after: int = 0
    mean_before: float = 0.0
    mean_after: float = 0.0
    withheld: bool = False

    @property
    def change(self) -> float | None:
        """Return the relative change of the mean, or None when it cannot be given."""
        if self.withheld or not self.mean_before:
            return None
        return self.mean_after / self.mean_before - 1.0


def group(counts: Counts, *, k: int) -> Group:
    """Return the reportable figures of a group: withheld when a people count is 1 .. k - 1."""
    people = (counts.people_before, counts.people_after)
    if any(0 < n < k for n in people):
        return Group(withheld=True)
    return Group(
        people_before=counts.people_before,
        people_after=counts.people_after,
        mean_before=counts.user_days_before / PERIOD_DAYS,
        mean_after=counts.user_days_after / PERIOD_DAYS,
    )


@dataclass(frozen=True, slots=True)
class Effect:
    """The measured effect of one activity, privacy applied."""

    plan: Plan
    status: str
    reason: str
    targeted: Group = field(default_factory=Group)
    comparison: Group = field(default_factory=Group)
    comparison_units: tuple[str, ...] = ()  # those with at least k people before and after
    uplift: float | None = None

    @property
    def activity(self) -> Activity:
        """Return the activity measured."""
        return self.plan.activity


def pending(plan: Plan, *, now: dt.datetime) -> Effect | None:
    """Return the pending effect of an activity whose after period is not over, else None."""
    if now >= plan.periods.measurable_at:
        return None
    ready = plan.periods.measurable_at.date().isoformat()
    return Effect(plan, PENDING, f"measurable from {ready} (14 days after its last day)")


def effect_of(plan: Plan, *, targeted: Counts, comparison: Counts, k: int) -> Effect:
    """Return the effect of a measurable activity from its groups' counts."""
    shown_targeted, shown_comparison = group(targeted, k=k), group(comparison, k=k)
    # Only units with at least k people in both periods are named: naming a smaller
    # one would tell that someone there was active.
    units = tuple(u for u, before, after in comparison.units if min(before, after) >= k)

    def with_status(status: str, reason: str, uplift: float | None = None) -> Effect:
        return Effect(plan, status, reason, shown_targeted, shown_comparison, units, uplift)

    if plan.activity.all_units:
        return with_status(NO_COMPARISON, "it targeted every org unit: nothing to compare with")
    if not plan.comparable:
        return with_status(
            NO_COMPARISON,
            "an overlapping activity of the same tool targeted every org unit: nothing to "
            "compare with",
        )
    for name, counts in (("targeted", targeted), ("comparison", comparison)):
        for period, people in (("before", counts.people_before), ("after", counts.people_after)):
            if people < k:
                return with_status(
                    WITHHELD,
                    f"the {name} group had fewer than k={k} active people in the 14 days {period}",
                )
    change_t, change_c = shown_targeted.change, shown_comparison.change
    if change_t is None or change_c is None:
        return with_status(WITHHELD, "a group had no 7-day active users before the activity")
    reason = "measured"
    if plan.overlapping:
        reason = "measured together with overlapping " + ", ".join(plan.overlapping)
    return with_status(MEASURED, reason, change_t - change_c)
