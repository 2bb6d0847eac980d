"""A real Prometheus scrapes the real server; the KPIs read back through its HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import uptake
from tests.conftest import require_tool
from tests.support.prometheus import Prometheus
from tests.support.servers import ServerProcess

REGISTRY = """
tools:
  wiki:
    licensed_seats: 20
    core_actions: [page_edit]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    process = ServerProcess(
        tmp_path / "var",
        extra_args=[
            "--kpi-refresh-seconds",
            "1",
            "--registry-file",
            str(tmp_path / "registry.yaml"),
        ],
    )
    with process:
        yield process


@pytest.fixture
def prometheus(tmp_path: Path, server: ServerProcess) -> Iterator[Prometheus]:
    binary = require_tool("prometheus", install="apt-get install prometheus")
    workdir = tmp_path / "prometheus"
    target = server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    with Prometheus(binary, workdir, jobs={"uptake": [target]}) as running:
        yield running


def test_prometheus_scrapes_the_kpis(server: ServerProcess, prometheus: Prometheus) -> None:
    with uptake.Client(server.target, mode="sync") as client:
        for i in range(14):
            unit = "sales" if i < 7 else "support" if i < 12 else "legal"
            client.track(f"person-{i}", "page_edit", tool="wiki", org_unit=unit)
        client.track("person-99", "page_view", tool="wiki", org_unit="sales")  # not core
        assert client.flush(10)
    result = prometheus.wait_for('uptake_active_users{tool="wiki",window="1d"} == 14')
    assert float(result[0]["value"][1]) == 14  # type: ignore[index]
    units = prometheus.wait_for('uptake_org_unit_active_users{tool="wiki",window="1d"}')
    got = {r["metric"]["org_unit"]: float(r["value"][1]) for r in units}  # type: ignore[index]
    assert got == {"sales": 7, "(other)": 7}  # legal (2) folds, and support (5) with it
    seats = prometheus.wait_for('uptake_seat_utilisation_ratio{tool="wiki"}')
    assert float(seats[0]["value"][1]) == 14 / 20  # type: ignore[index]
    assert prometheus.wait_for('uptake_kpi_series_suppressed{reason="complementary"} > 0')
    age = prometheus.wait_for("time() - uptake_kpi_refresh_last_success_timestamp_seconds")
    assert float(age[0]["value"][1]) < 30  # type: ignore[index]
