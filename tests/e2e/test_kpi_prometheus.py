"""A real Prometheus scrapes the real server; the KPIs read back through its HTTP API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import uptake
from tests.conftest import require_tool
from tests.support.servers import ServerProcess, free_port

REGISTRY = """
tools:
  wiki:
    licensed_seats: 20
    core_actions: [page_edit]
"""


class Prometheus:
    """/usr/bin/prometheus on loopback with a temporary config and storage directory."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: uptake\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def query(self, promql: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, object]] = json.load(response)["data"]["result"]
            return result

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                result = self.query(promql)
                if result:
                    return result
            time.sleep(0.5)
        raise AssertionError(f"no result for {promql}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
    workdir.mkdir()
    target = server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    running = Prometheus(binary, workdir, target)
    yield running
    running.stop()


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
