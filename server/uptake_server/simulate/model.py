"""The adoption model: who starts using which tool when, and how often they come back.

Deterministic for a seed. Each tool has a go-live day and a ramp-up: people adopt
it on a day drawn from a logistic curve after go-live, up to a ceiling share of
their org unit. One tool stalls (its ceiling is low and reached early), one org
unit never adopts anything, and weekends are quiet. Adopters are active on a
given day with a probability that decays slowly (some drift away).

Two adoption activities: a roadshow for the stalled CRM in sales, after which a
share of the sales people who had not adopted it do so within days (a lift), and a
webinar for the wiki in two other units that changes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolModel:
    """How one tool is adopted."""

    tool: str
    name: str
    go_live_days_ago: int
    ramp_days: float
    ceiling: float
    actions: tuple[str, ...]
    core_actions: tuple[str, ...]
    features: tuple[str, ...]
    seats_share: float = 0.9
    target: float = 0.6
    unit_ceilings: tuple[tuple[str, float], ...] = ()  # (org unit, ceiling) overrides

    def ceiling_of(self, unit: str) -> float:
        """Return the share of an org unit that adopts the tool."""
        return dict(self.unit_ceilings).get(unit, self.ceiling)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityModel:
    """An adoption activity on one day, and what it does to adoption.

    `lift` is the share of the targeted units' people without the tool who adopt
    it within three days after the activity (0: the activity changes nothing).
    """

    id: str
    tool: str
    kind: str
    title: str
    org_units: tuple[str, ...]
    days_ago: int
    lift: float = 0.0
    hours: tuple[int, int] = (9, 17)

    def span(self, *, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """Return when the activity began and ended (UTC)."""
        day = now.astimezone(dt.UTC).date() - dt.timedelta(days=self.days_ago)
        midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
        first, last = self.hours
        return midnight + dt.timedelta(hours=first), midnight + dt.timedelta(hours=last)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Everything the simulation varies."""

    seed: int = 42
    days: int = 56
    users: int = 400
    tools: tuple[ToolModel, ...] = ()
    org_units: tuple[str, ...] = ()
    never_adopts: str = ""
    weekday_activity: float = 0.65
    weekend_activity: float = 0.08
    daily_drift: float = 0.004
    events_per_day: tuple[int, int] = (1, 6)
    work_hours: tuple[int, int] = (7, 18)
    activities: tuple[ActivityModel, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One event to send."""

    at: dt.datetime
    user_id: str
    tool: str
    action: str
    org_unit: str
    feature: str | None


# Measured over the 14 days before and after (docs/activities.md): they fit in the
# history from 37 days on, and their 14 days after are over.
DEMO_ACTIVITIES = (
    ActivityModel(
        id="crm-roadshow-sales",
        tool="crm",
        kind="roadshow",
        title="CRM roadshow at the sales offices",
        org_units=("sales",),
        days_ago=18,
        lift=0.35,
    ),
    ActivityModel(
        id="wiki-webinar-tips",
        tool="wiki",
        kind="webinar",
        title="Wiki tips and tricks webinar",
        org_units=("engineering", "support"),
        days_ago=22,
    ),
)
# Days of history an activity needs: its 14 days before, the 6 days whose activity
# the first of them counts (7-day active users), and the activity's own day.
_HISTORY_BEFORE = 14 + 6 + 1


def default_scenario(*, seed: int = 42, days: int = 56, users: int = 400) -> Scenario:
    """Return the demo scenario: four tools, six org units, one stall, one laggard unit."""
    longest = max(days - 2, 1)
    return Scenario(
        activities=tuple(a for a in DEMO_ACTIVITIES if a.days_ago + _HISTORY_BEFORE <= days),
        seed=seed,
        days=days,
        users=users,
        org_units=("sales", "engineering", "support", "finance", "marketing", "legal"),
        never_adopts="legal",
        tools=(
            ToolModel(
                tool="wiki",
                name="Wiki",
                go_live_days_ago=longest,
                ramp_days=21,
                ceiling=0.85,
                actions=("page_view", "page_edit", "comment"),
                core_actions=("page_edit", "page_view"),
                features=("search", "comments", "templates", "export"),
            ),
            ToolModel(
                tool="chat",
                name="Team chat",
                go_live_days_ago=min(longest, 42),
                ramp_days=7,
                ceiling=0.95,
                actions=("message", "reaction", "call"),
                core_actions=(),
                features=("threads", "calls", "files"),
                target=0.8,
            ),
            ToolModel(
                tool="crm",
                name="CRM",
                go_live_days_ago=min(longest, 35),
                ramp_days=5,
                ceiling=0.12,
                unit_ceilings=(("sales", 0.3),),
                actions=("record_view", "record_edit"),
                core_actions=("record_edit",),
                features=("reports", "pipeline", "import"),
            ),
            ToolModel(
                tool="docs",
                name="Documents",
                go_live_days_ago=min(longest, 18),
                ramp_days=14,
                ceiling=0.7,
                actions=("open", "edit", "share"),
                core_actions=("edit", "share"),
                features=("sharing", "versions"),
            ),
        ),
    )


def generate(scenario: Scenario, *, now: dt.datetime) -> Iterator[list[SimulatedEvent]]:
    """Yield the events of each simulated day, oldest day first, none after `now`."""
    rnd = random.Random(scenario.seed)
    people = [
        (f"user-{i:05d}", scenario.org_units[rnd.randrange(len(scenario.org_units))])
        for i in range(scenario.users)
    ]
    adoption = {
        (tool.tool, user): _adoption_day(rnd, tool, unit, unit == scenario.never_adopts)
        for tool in scenario.tools
        for user, unit in people
    }
    _lift(scenario, people, adoption)
    today = now.astimezone(dt.UTC).date()
    for offset in range(scenario.days - 1, -1, -1):
        day = today - dt.timedelta(days=offset)
        yield sorted(_day(scenario, rnd, people, adoption, day, offset, now), key=lambda e: e.at)


def _lift(
    scenario: Scenario,
    people: list[tuple[str, str]],
    adoption: dict[tuple[str, str], float | None],
) -> None:
    """Make a share of each lifting activity's targeted non-adopters adopt right after it."""
    tools = {tool.tool: tool for tool in scenario.tools}
    for activity in scenario.activities:
        tool = tools.get(activity.tool)
        if tool is None or not activity.lift:
            continue
        # Its own stream, so the rest of the simulation draws what it drew without it.
        rnd = random.Random(f"{scenario.seed}/{activity.id}")
        day = tool.go_live_days_ago - activity.days_ago
        for user, unit in people:
            adopted = adoption[(tool.tool, user)]
            if unit not in activity.org_units or (adopted is not None and adopted <= day):
                continue
            if rnd.random() < activity.lift:
                adoption[(tool.tool, user)] = day + rnd.uniform(0.5, 3.0)


def _adoption_day(rnd: random.Random, tool: ToolModel, unit: str, laggard: bool) -> float | None:
    if laggard or rnd.random() > tool.ceiling_of(unit):
        return None
    # Inverse of a logistic ramp centred half-way through the ramp-up.
    u = min(max(rnd.random(), 1e-6), 1 - 1e-6)
    return tool.ramp_days / 2 + tool.ramp_days / 8 * math.log(u / (1 - u))


def _day(
    scenario: Scenario,
    rnd: random.Random,
    people: list[tuple[str, str]],
    adoption: dict[tuple[str, str], float | None],
    day: dt.date,
    days_ago: int,
    now: dt.datetime,
) -> Iterator[SimulatedEvent]:
    weekend = day.weekday() >= 5
    base = scenario.weekend_activity if weekend else scenario.weekday_activity
    start_hour, end_hour = scenario.work_hours
    for tool in scenario.tools:
        since_live = tool.go_live_days_ago - days_ago
        if since_live < 0:
            continue
        for user, unit in people:
            adopted = adoption[(tool.tool, user)]
            if adopted is None or since_live < max(adopted, 0):
                continue
            chance = base * math.exp(-scenario.daily_drift * (since_live - max(adopted, 0)))
            if rnd.random() >= chance:
                continue
            for _ in range(rnd.randint(*scenario.events_per_day)):
                seconds = rnd.randrange(start_hour * 3600, end_hour * 3600)
                at = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=seconds)
                if at > now:
                    continue
                feature = rnd.choice(tool.features) if rnd.random() < 0.4 else None
                action = rnd.choice(tool.actions)
                yield SimulatedEvent(at, user, tool.tool, action, unit, feature)


def registry_document(scenario: Scenario, *, now: dt.datetime) -> dict[str, object]:
    """Return a tool registry (YAML-ready) describing the simulated tools."""
    today = now.astimezone(dt.UTC).date()
    members = scenario.users
    return {
        "tools": {
            t.tool: {
                "name": t.name,
                "go_live": (today - dt.timedelta(days=t.go_live_days_ago)).isoformat(),
                "licensed_seats": max(1, round(members * t.seats_share)),
                "adoption_target": t.target,
                "core_actions": list(t.core_actions),
                "features": list(t.features),
            }
            for t in scenario.tools
        }
    }
