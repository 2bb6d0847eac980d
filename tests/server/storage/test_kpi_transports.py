"""The KPI SQL on every transport: the refresher's rows equal the pure-Python reference."""

from __future__ import annotations

import datetime as dt
import math
import random
import time

from tests.server.kpi.reference import DAY_MS, Ev, reference_rows
from uptake_server.kpi.plugins import discover_kpis
from uptake_server.kpi.reader import KpiReader
from uptake_server.kpi.refresher import PrivacyLimits, Refresher
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.registry import parse_registry
from uptake_server.store import ClickHouseStore

NOW_MS = (int(time.time()) // 60) * 60_000 - 7 * 60_000 + 123
REGISTRY = parse_registry(
    {"tools": {"wiki": {"licensed_seats": 20, "core_actions": ["edit"], "features": ["search"]}}}
)


def history(seed: int, count: int) -> list[Ev]:
    """Return a reproducible spread of events over the last 40 days."""
    rng = random.Random(seed)
    return [
        Ev(
            rng.choice(["wiki", "chat"]),
            rng.choice(["view", "edit"]),
            rng.randrange(12).to_bytes(16, "big"),
            rng.choice(["a", "b"]),
            rng.choice(["", "search"]),
            NOW_MS - rng.randrange(40 * DAY_MS),
        )
        for _ in range(count)
    ]


def columns(events: list[Ev]) -> EventColumns:
    cols = EventColumns()
    for i, e in enumerate(events):
        cols.event_id.append(i.to_bytes(16, "big"))
        cols.occurred_at.append(e.ts)
        cols.received_at.append(e.ts)
        cols.tool.append(e.tool)
        cols.action.append(e.action)
        cols.user_id.append(e.user)
        cols.org_unit.append(e.org_unit)
        cols.feature.append(e.feature)
        cols.client.append("test")
        cols.property_keys.append([])
        cols.property_values.append([])
    return cols


def test_kpi_rows_match_the_reference(store: ClickHouseStore) -> None:
    events = history(seed=6, count=300)
    store.insert(columns(events), FailedColumns())
    refresher = Refresher(
        KpiReader(store),
        kpis=discover_kpis(REGISTRY, plugins=False),
        registry=REGISTRY,
        limits=PrivacyLimits(),
    )
    rows = refresher.rows(now=dt.datetime.fromtimestamp(NOW_MS / 1000, dt.UTC))
    got = {(r.kpi, r.tool, r.org_unit, r.labels): (r.num, r.den) for r in rows}
    want = reference_rows(events, REGISTRY, NOW_MS)
    assert len(want) > 20
    assert set(got) == set(want), set(got) ^ set(want)
    for key, (num, den) in want.items():
        assert math.isclose(got[key][0], num, abs_tol=1e-6), (key, got[key], num)
        assert math.isclose(got[key][1], den, abs_tol=1e-6), (key, got[key], den)
