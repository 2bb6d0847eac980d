"""Fixtures of the KPI tests: one embedded store per module, emptied between examples."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.kpi.reference import Ev
from uptake_server.kpi.plugins import discover_kpis
from uptake_server.kpi.reader import KpiReader
from uptake_server.kpi.refresher import PrivacyLimits, Refresher
from uptake_server.model import EventColumns, FailedColumns
from uptake_server.registry import Registry
from uptake_server.store import ClickHouseStore, SchemaContext
from uptake_server.store.dsn import parse_dsn

TABLES = ("events", "event_ids", "kpi_user_hours", "kpi_user_days", "kpi_first_seen")


class KpiStore:
    """An embedded store with helpers to load events and compute KPI rows."""

    def __init__(self, path: Path) -> None:
        self.store = ClickHouseStore(parse_dsn(f"chdb://{path}")[0])
        self.store.migrate(SchemaContext())
        self.reader = KpiReader(self.store)

    def reset(self) -> None:
        for table in TABLES:
            self.reader.command(f"TRUNCATE TABLE {table}")

    def insert(self, events: list[Ev], *, received_ms: int | None = None) -> None:
        cols = EventColumns()
        for e in events:
            cols.event_id.append(os.urandom(16))
            cols.occurred_at.append(e.ts)
            cols.received_at.append(received_ms if received_ms is not None else e.ts)
            cols.tool.append(e.tool)
            cols.action.append(e.action)
            cols.user_id.append(e.user)
            cols.org_unit.append(e.org_unit)
            cols.feature.append(e.feature)
            cols.client.append("test")
            cols.property_keys.append([])
            cols.property_values.append([])
        if events:
            self.store.insert(cols, FailedColumns())

    def refresher(self, registry: Registry, **limits: int) -> Refresher:
        return Refresher(
            self.reader,
            kpis=discover_kpis(registry, plugins=False),
            registry=registry,
            limits=PrivacyLimits(**limits),
        )

    def rows(
        self, registry: Registry, now_ms: int
    ) -> dict[tuple[object, ...], tuple[float, float]]:
        now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
        rows = self.refresher(registry).rows(now=now)
        out: dict[tuple[object, ...], tuple[float, float]] = {}
        for r in rows:
            key = (r.kpi, r.tool, r.org_unit, r.labels)
            assert key not in out, f"duplicate row {key}"
            out[key] = (r.num, r.den)
        return out


@pytest.fixture(scope="module")
def kpi_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KpiStore]:
    opened = KpiStore(tmp_path_factory.mktemp("kpi") / "store")
    yield opened
    opened.store.close()


@pytest.fixture
def empty_store(kpi_store: KpiStore) -> KpiStore:
    kpi_store.reset()
    return kpi_store
