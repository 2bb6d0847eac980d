"""Generated adoption histories with a known lift, and activities placed in them."""

from __future__ import annotations

import datetime as dt
import random
import time

from tests.server.kpi.reference import Ev
from uptake_server.activities.model import Activity

DAY = dt.timedelta(days=1)
# Today 15:30 UTC, near the real clock (the store's TTLs use it).
NOW = dt.datetime.combine(
    dt.datetime.fromtimestamp(time.time(), dt.UTC).date(), dt.time(15, 30), dt.UTC
)


def user_id(name: str) -> bytes:
    """Return a 16-byte pseudonym for a name."""
    return name.encode().ljust(16, b"\0")[:16]


def ms(moment: dt.datetime) -> int:
    """Return a moment in milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def activity(
    activity_id: str,
    *,
    days_ago: int,
    units: tuple[str, ...],
    length_days: int = 0,
    tool: str = "wiki",
    kind: str = "roadshow",
) -> Activity:
    """Return an activity from 09:00 UTC `days_ago` days before today, lasting some days."""
    start = dt.datetime.combine(NOW.date() - days_ago * DAY, dt.time(9), dt.UTC)
    end = start + length_days * DAY + dt.timedelta(hours=8)
    return Activity(
        id=activity_id,
        tool=tool,
        kind=kind,
        title=activity_id,
        start_ms=ms(start),
        end_ms=ms(end),
        org_units=tuple(sorted(units)),
    )


def history(
    *,
    seed: int,
    units: dict[str, int],
    days: int,
    rate: float = 0.45,
    weekend_rate: float = 0.1,
    lift_unit: str | None = None,
    lift: float = 0.0,
    lift_days_ago: int = 0,
    tool: str = "wiki",
    cohort: str = "",
) -> list[Ev]:
    """Return `days` days of events of people in org units, active on a day with `rate`.

    With a lift, round(lift x people) more people of `lift_unit` start using the tool
    `lift_days_ago` days ago, as active as the others from then on: the mean 7-day
    active users of that unit then grow by about `lift` once all of them are in.
    People are named after their cohort, unit and number.
    """
    rnd = random.Random(seed)
    people = [(f"{cohort}{unit}-{i}", unit, days) for unit, n in units.items() for i in range(n)]
    if lift_unit is not None:
        extra = round(lift * units[lift_unit])
        people += [(f"{lift_unit}-new-{i}", lift_unit, lift_days_ago) for i in range(extra)]
    events = []
    for name, unit, since in people:
        for ago in range(since, -1, -1):
            day = NOW.date() - ago * DAY
            chance = weekend_rate if day.weekday() >= 5 else rate
            if rnd.random() >= chance:
                continue
            at = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(
                seconds=rnd.randrange(8 * 3600, 15 * 3600)
            )
            if at > NOW:
                continue
            action = rnd.choice(("edit", "view"))
            events.append(Ev(tool, action, user_id(name), unit, "", ms(at)))
    return events
