"""An independent pure-Python reference for every built-in KPI, from the same events.

It reads the definitions of docs/kpis.md literally, event by event, with no
hourly aggregates, so the SQL (which works from aggregates and boundary rows) is
checked against the plain meaning of each KPI.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from uptake_server.registry import Registry

DAY_MS = 86_400_000
WINDOWS = {"1d": 1, "7d": 7, "28d": 28}
Key = tuple[str, str, str | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Ev:
    """One stored event."""

    tool: str
    action: str
    user: bytes
    org_unit: str
    feature: str
    ts: int  # ms since the epoch, UTC


def reference_rows(
    events: list[Ev], registry: Registry, now_ms: int
) -> dict[Key, tuple[float, float]]:
    """Return {(kpi, tool, org_unit, labels): (num, den)} as the refresher's rows should be."""
    out: dict[Key, tuple[float, float]] = {}

    def q(e: Ev) -> bool:
        spec = registry.tool(e.tool)
        return spec is None or not spec.core_actions or e.action in spec.core_actions

    since = {w: now_ms - d * DAY_MS for w, d in WINDOWS.items()}
    t7, t14, t28 = since["7d"], now_ms - 14 * DAY_MS, since["28d"]
    first_q: dict[tuple[str, bytes], int] = {}
    for e in events:
        if q(e):
            key = (e.tool, e.user)
            first_q[key] = min(first_q.get(key, e.ts), e.ts)
    people: dict[tuple[str, bytes], list[Ev]] = defaultdict(list)
    for e in events:
        if t28 < e.ts <= now_ms:
            people[(e.tool, e.user)].append(e)
    snap = {}
    for (tool, user), evs in people.items():
        qual = [e for e in evs if q(e)]
        latest = max(qual, key=lambda e: (e.ts, e.org_unit)) if qual else None
        snap[(tool, user)] = {
            "last": latest.ts if latest else 0,
            "unit": latest.org_unit if latest else "",
            "prev": any(
                t14 < e.ts <= t7 for e in events if e.tool == tool and e.user == user and q(e)
            ),
            "features": {e.feature for e in evs if e.feature},
            "first": first_q.get((tool, user), 0),
        }
    tools = {t for t, _ in snap}
    registered = set(registry.tools)
    for tool in tools | registered:
        mine = [p for (t, _), p in snap.items() if t == tool]
        active = [p for p in mine if p["last"] > t28]
        if active or tool in registered:
            for w, s in since.items():
                out[("active_users", tool, None, (w,))] = (sum(p["last"] > s for p in active), 1.0)
        if active:
            a1 = sum(p["last"] > since["1d"] for p in active)
            out[("stickiness_ratio", tool, None, ())] = (a1, len(active))
        for unit in {p["unit"] for p in active}:
            members = [p for p in active if p["unit"] == unit]
            for w, s in since.items():
                out[("active_users", tool, unit, (w,))] = (sum(p["last"] > s for p in members), 1.0)
            a1 = sum(p["last"] > since["1d"] for p in members)
            out[("stickiness_ratio", tool, unit, ())] = (a1, len(members))
        if mine or tool in registered:
            counts = dict.fromkeys(("new", "returning", "resurrected", "dormant"), 0)
            for p in mine:
                a7 = p["last"] > t7
                new = t7 < p["first"] <= now_ms
                if a7 and new:
                    counts["new"] += 1
                elif a7 and p["prev"]:
                    counts["returning"] += 1
                elif a7:
                    counts["resurrected"] += 1
                elif p["prev"]:
                    counts["dormant"] += 1
            for state, n in counts.items():
                out[("lifecycle_users", tool, None, (state,))] = (n, 1.0)
        spec = registry.tool(tool)
        if spec is not None and spec.licensed_seats:
            out[("seat_utilisation_ratio", tool, None, ())] = (len(active), spec.licensed_seats)
        if spec is not None and spec.features:
            used = 0
            for feature in spec.features:
                n = sum(feature in p["features"] for p in mine)
                used += n > 0
                out[("feature_users", tool, None, (feature,))] = (n, 1.0)
            out[("feature_breadth_ratio", tool, None, ())] = (used, len(spec.features))
        if spec is not None and spec.go_live is not None:
            go_live = dt.datetime.combine(spec.go_live, dt.time(), dt.UTC).timestamp()
            out[("go_live_timestamp_seconds", tool, None, ())] = (go_live, 1.0)
        if spec is not None and spec.adoption_target is not None:
            out[("adoption_target_ratio", tool, None, ())] = (spec.adoption_target, 1.0)
    for tool in {e.tool for e in events}:
        stamps = [e.ts for e in events if e.tool == tool and e.ts <= now_ms]
        if stamps:
            out[("last_event_timestamp_seconds", tool, None, ())] = (max(stamps) / 1000, 1.0)
    _retention(events, q, first_q, now_ms, out)
    _declared(events, registry, now_ms, out)
    return out


def _declared(events, registry, now_ms, out) -> None:  # type: ignore[no-untyped-def]
    for kpi in registry.kpis:
        days = WINDOWS[kpi.window] if kpi.kind == "users" else 1
        hits = [
            e
            for e in events
            if e.action == kpi.action
            and kpi.tool in (None, e.tool)
            and now_ms - days * DAY_MS < e.ts <= now_ms
        ]
        for tool in {e.tool for e in hits}:
            mine = [e for e in hits if e.tool == tool]
            n = len({e.user for e in mine}) if kpi.kind == "users" else len(mine)
            out[(kpi.name, tool, None, ())] = (n, 1.0)


def _retention(events, q, first_q, now_ms, out) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    monday = dt.datetime.combine(now.date() - dt.timedelta(days=now.weekday()), dt.time(), dt.UTC)
    active_days: dict[tuple[str, bytes], set[dt.date]] = defaultdict(set)
    for e in events:
        if q(e):
            active_days[(e.tool, e.user)].add(dt.datetime.fromtimestamp(e.ts / 1000, dt.UTC).date())
    for n in (1, 4):
        start = monday - dt.timedelta(weeks=n + 1)
        lo, hi = (
            int(start.timestamp() * 1000),
            int((start + dt.timedelta(days=7)).timestamp() * 1000),
        )
        week = {(start + dt.timedelta(weeks=n, days=i)).date() for i in range(7)}
        per_tool: dict[str, list[bool]] = defaultdict(list)
        for (tool, user), first in first_q.items():
            if lo <= first < hi:
                per_tool[tool].append(bool(active_days[(tool, user)] & week))
        for tool, hits in per_tool.items():
            out[("retention_ratio", tool, None, (str(n),))] = (sum(hits), len(hits))
