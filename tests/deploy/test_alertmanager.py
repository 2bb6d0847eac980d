"""The example Alertmanager configuration: valid, routes every alert to its team, inhibits."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool
from tests.deploy import dashboards
from tests.support.servers import free_port

CONFIG = dashboards.ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
INSTALL = "sudo apt-get install prometheus-alertmanager"
# Who hears about what: adoption alerts reach the rollout team, service alerts SRE.
RECEIVERS = {
    ("adoption", "info"): "rollout-team-celebrations",
    ("adoption", "warning"): "rollout-team",
    ("service", "warning"): "sre",
    ("service", "critical"): "sre-pager",
}
SAMPLE_LABELS = {"adoption": {"tool": "wiki"}, "service": {"job": "uptake"}}


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_tool("amtool", install=INSTALL)


def routed_receivers(amtool: str, labels: dict[str, str]) -> list[str]:
    """Return the receivers Alertmanager's routing tree picks for an alert."""
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}"]
        + [f"{name}={value}" for name, value in labels.items()],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def test_config_passes_amtool_check(amtool: str) -> None:
    result = subprocess.run(
        [amtool, "check-config", str(CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule", dashboards.alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_reaches_its_team(amtool: str, rule: dict[str, Any]) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    labels.update(SAMPLE_LABELS[labels["category"]])
    expected = RECEIVERS[(labels["category"], labels["severity"])]
    assert routed_receivers(amtool, labels) == [expected]


def test_both_teams_are_reached() -> None:
    routed = {
        RECEIVERS[(rule["labels"]["category"], rule["labels"]["severity"])]
        for rule in dashboards.alerting_rules()
    }
    assert routed & {"rollout-team", "rollout-team-celebrations"}
    assert routed & {"sre", "sre-pager"}


def test_an_alert_without_category_still_reaches_sre(amtool: str) -> None:
    assert routed_receivers(amtool, {"alertname": "Unexpected", "severity": "critical"}) == ["sre"]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """Run the real Alertmanager on loopback with the example routes and inhibitions.

    The receivers are emptied so that nothing is ever sent anywhere.
    """
    binary = require_tool("prometheus-alertmanager", install=INSTALL)
    config = yaml.safe_load(CONFIG.read_text())
    config["receivers"] = [{"name": receiver["name"]} for receiver in config["receivers"]]
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait until Alertmanager answers /-/ready; fail with its log if it does not."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"alertmanager exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"alertmanager was not ready after 30 s:\n{log_path.read_text()}")


def post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def inhibited(url: str) -> dict[tuple[str, str], bool]:
    """Return, per (alertname, tool or job), whether Alertmanager inhibits the alert."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        alerts = json.load(response)
    return {
        (a["labels"]["alertname"], a["labels"].get("tool") or a["labels"].get("job", "")): bool(
            a["status"]["inhibitedBy"]
        )
        for a in alerts
    }


def test_stale_kpis_and_store_outage_inhibit_what_they_explain(alertmanager: str) -> None:
    adoption = {"category": "adoption", "severity": "warning"}
    service = {"category": "service", "severity": "critical"}
    post_alerts(
        alertmanager,
        [
            {"alertname": "UptakeAdoptionStalled", "tool": "wiki", **adoption},
            {"alertname": "UptakeStoreUnavailable", "job": "ingest", **service},
            {"alertname": "UptakeIngestErrorRatioHigh", "job": "ingest", **service},
            {"alertname": "UptakeIngestErrorRatioHigh", "job": "other", **service},
        ],
    )
    assert inhibited(alertmanager) == {
        ("UptakeAdoptionStalled", "wiki"): False,
        ("UptakeStoreUnavailable", "ingest"): False,
        ("UptakeIngestErrorRatioHigh", "ingest"): True,
        ("UptakeIngestErrorRatioHigh", "other"): False,
    }
    stale = {"alertname": "UptakeKpiRefreshStale", "category": "service", "severity": "warning"}
    post_alerts(alertmanager, [stale])
    state = inhibited(alertmanager)
    assert state[("UptakeAdoptionStalled", "wiki")] is True
    assert state[("UptakeKpiRefreshStale", "")] is False
