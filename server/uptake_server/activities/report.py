"""Which activities to show and what they did: selection for export and reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from uptake_server.activities.effect import Effect, plan_all
from uptake_server.activities.measure import Measurer
from uptake_server.activities.model import DAY_MS, Activity
from uptake_server.activities.store import ActivityStore

MAX_REPORTED = 1000


def recent(
    activities: Sequence[Activity], *, now: dt.datetime, window_days: int, limit: int
) -> list[Activity]:
    """Return the activities started in the last `window_days`, newest first, at most `limit`."""
    now_ms = int(now.timestamp() * 1000)
    started = [a for a in activities if now_ms - window_days * DAY_MS < a.start_ms <= now_ms]
    return sorted(started, key=lambda a: (-a.start_ms, a.id))[:limit]


def effects(
    activities: Sequence[Activity],
    chosen: Sequence[Activity],
    measurer: Measurer,
    *,
    now: dt.datetime,
) -> list[Effect]:
    """Return the effect of each chosen activity, overlaps found among all `activities`."""
    plans = {plan.activity.id: plan for plan in plan_all(activities)}
    return measurer.measure([plans[a.id] for a in chosen], now=now)


def report(
    store: ActivityStore,
    measurer: Measurer,
    *,
    now: dt.datetime,
    tool: str = "",
    activity_id: str = "",
    visible: Callable[[str], bool] = lambda tool: True,
) -> list[Effect]:
    """Return the effects of the stored activities a report asks for, newest start first."""
    everything = store.find()
    chosen = [
        a
        for a in everything
        if visible(a.tool)
        and (not tool or a.tool == tool)
        and (not activity_id or a.id == activity_id)
    ]
    return effects(everything, chosen[:MAX_REPORTED], measurer, now=now)
