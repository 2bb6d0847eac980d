"""The exporter in-process: /metrics from the cache, promtool-clean, served without the store."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_tool
from tests.server.kpi.conftest import KpiStore
from tests.server.kpi.reference import Ev
from uptake_server.config import load_settings
from uptake_server.kpi.exporter import KpiService
from uptake_server.kpi.report import parse_exposition, show_kpis

REGISTRY_YAML = """
tools:
  wiki:
    licensed_seats: 40
    go_live: "2026-01-05"
    adoption_target: 0.5
    features: [search]
kpis:
  - {name: wiki_views_per_day, help: Page views in the last 24 hours., kind: events_per_day,
     action: view, tool: wiki}
"""


def events(now_ms: int) -> list[Ev]:
    units = ["sales"] * 7 + ["support"] * 6 + ["legal"] * 2
    return [
        Ev("wiki", "view", i.to_bytes(16, "big"), unit, "search", now_ms - 1000 - i)
        for i, unit in enumerate(units)
    ]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KpiService]:
    (tmp_path / "registry.yaml").write_text(REGISTRY_YAML)
    settings = load_settings(
        {
            "data_dir": str(tmp_path / "var"),
            "metrics_listen": "127.0.0.1:0",
            "registry_file": str(tmp_path / "registry.yaml"),
            "kpi_refresh_seconds": 3600.0,
        },
        environ={},
    )
    svc = KpiService(settings)
    yield svc
    svc.stop()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_metrics_come_from_the_cache_and_pass_promtool(service: KpiService, tmp_path: Path) -> None:
    promtool = require_tool("promtool", install="apt-get install prometheus")
    now_ms = int(time.time() * 1000)
    KpiStore.insert(service, events(now_ms))  # type: ignore[arg-type]
    service.start()
    deadline = time.monotonic() + 30
    while service.exporter.refresher.snapshot is None and time.monotonic() < deadline:
        time.sleep(0.05)
    service.exporter.refresher.refresh()
    first = scrape(service.metrics_url)
    # The cache is served even when the store is gone: a scrape never queries it.
    service.store.close()
    text = scrape(service.metrics_url)
    assert parse_exposition(text) == parse_exposition(first)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("uptake_active_users", (("tool", "wiki"), ("window", "28d")))] == 15
    assert values[("uptake_seat_utilisation_ratio", (("tool", "wiki"),))] == 15 / 40
    assert values[("uptake_wiki_views_per_day", (("tool", "wiki"),))] == 15
    org = {
        dict(labels)["org_unit"]: v
        for (name, labels), v in values.items()
        if name == "uptake_org_unit_active_users" and dict(labels)["window"] == "28d"
    }
    assert org == {"sales": 7, "(other)": 8}  # legal (2) folds with support, the smallest
    assert values[("uptake_kpi_definitions_info", (("definition_version", "1"),))] == 1
    assert values[("uptake_kpi_refresh_errors_total", ())] == 0
    assert not any("user" in dict(labels) for _, labels in values)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_kpis_command_reads_the_running_server_when_the_store_is_locked(
    service: KpiService, capsys: pytest.CaptureFixture[str]
) -> None:
    KpiStore.insert(service, events(int(time.time() * 1000)))  # type: ignore[arg-type]
    service.start()
    service.exporter.refresher.refresh(now=dt.datetime.now(dt.UTC))
    port = service.metrics_url.rsplit(":", 1)[1].split("/")[0]
    settings = service.settings.replace(metrics_listen=f"127.0.0.1:{port}")
    assert show_kpis(settings, tool="wiki", fmt="json") == 0
    out = capsys.readouterr().out
    assert '"metric": "uptake_active_users", "labels": {"tool": "wiki", "window": "28d"}' in out
    assert '"value": 15.0' in out
