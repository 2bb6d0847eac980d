"""The KPI role (`uptake-server kpi`): registry activities synced, both families served."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client import generate_latest

from tests.server.activities.histories import DAY, NOW, activity
from tests.server.activities.test_exporter import samples
from tests.server.test_service import settings_for
from uptake_server.activities.exporter import START_FAMILY, UPLIFT_FAMILY
from uptake_server.activities.store import ActivityStore
from uptake_server.kpi.exporter import KpiService
from uptake_server.registry import parse_registry
from uptake_server.store import open_store, schema_context


def test_the_kpi_role_serves_the_families_after_each_refresh(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    mail_day = (NOW - 3 * DAY).date()
    path.write_text(
        "tools: {wiki: {}}\nactivities:\n"
        "  - {id: mail, tool: wiki, kind: communication, title: Mail, "
        f"start: '{mail_day.isoformat()}'}}\n"
    )
    settings = settings_for(tmp_path / "var", registry_file=str(path))
    store = open_store(settings)
    try:
        store.migrate(schema_context(settings))
        hand = activity("hand", days_ago=1, units=(), kind="other")
        ActivityStore(store, registry=parse_registry({"tools": {"wiki": {}}})).add(
            hand, source="cli"
        )
    finally:
        store.close()
    service = KpiService(settings)
    try:
        registry = service.registry
        text = generate_latest(registry).decode()
        assert f"# TYPE {START_FAMILY} gauge" in text and f"# TYPE {UPLIFT_FAMILY} gauge" in text
        assert samples(registry)[START_FAMILY] == {}
        service.exporter.refresher.refresh(now=NOW)
        midnight = dt.datetime.combine(mail_day, dt.time(), dt.UTC).timestamp()
        assert samples(registry)[START_FAMILY] == {
            ("wiki", "other", "hand"): hand.start_ms / 1000,
            ("wiki", "communication", "mail"): midnight,
        }
    finally:
        service.stop()
