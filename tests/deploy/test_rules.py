"""The Prometheus rule files: promtool checks, a unit test for every alert, conventions."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool
from tests.deploy import dashboards

RULE_TESTS = sorted((dashboards.ROOT / "tests" / "deploy" / "rules").glob("*.test.yml"))
ALERTS_DOC = dashboards.ROOT / "docs" / "alerts.md"
THRESHOLDS = dashboards.RULES_DIR / "uptake-thresholds.rules.yml"
SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {"adoption", "service"}
# level:metric:operations, the level naming the labels kept ("uptake" for none).
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")
# A template action that runs a query, e.g. {{ with query "x" }} or printf ... | query.
TEMPLATE_QUERY = re.compile(r"\{\{[^}]*\bquery\b[^}]*\}\}")
MIN_FOR_SECONDS = 5 * 60

ALERTS = dashboards.alerting_rules()


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", install="sudo apt-get install prometheus")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    files = dashboards.rule_files()
    assert {path.name for path in files} >= {
        "uptake-recording.rules.yml",
        "uptake-thresholds.rules.yml",
        "uptake-adoption.rules.yml",
        "uptake-service.rules.yml",
    }
    result = run(promtool, "check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(promtool: str, path: Path) -> None:
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alert_checks() -> dict[str, dict[str, int]]:
    """Count, per alert, the unit-test checks where it must fire and where it must not."""
    counts: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                outcome = "fires" if check.get("exp_alerts") else "silent"
                per_alert = counts.setdefault(check["alertname"], {"fires": 0, "silent": 0})
                per_alert[outcome] += 1
    return counts


def test_every_alert_has_a_firing_scenario_and_a_near_miss() -> None:
    checks = alert_checks()
    names = {rule["alert"] for rule in ALERTS}
    assert set(checks) <= names, f"tests of unknown alerts: {set(checks) - names}"
    untested = sorted(
        name
        for name in names
        if checks.get(name, {}).get("fires", 0) == 0 or checks.get(name, {}).get("silent", 0) == 0
    )
    assert not untested, f"alerts without both a firing and a silent check: {untested}"


def runbook_anchors() -> set[str]:
    """Return the anchors GitHub-style renderers give the second-level headings."""
    headings = re.findall(r"^## (.+)$", ALERTS_DOC.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_is_labelled_described_and_has_a_runbook_section(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert name.startswith("Uptake")
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["labels"]["category"] in CATEGORIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert annotations["runbook_url"] == f"docs/alerts.md#{name.lower()}"
    assert name.lower() in runbook_anchors(), f"docs/alerts.md has no '## {name}' section"
    assert dashboards.duration_seconds(rule["for"]) >= MIN_FOR_SECONDS, "for: too short to settle"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    wrong = [name for name in dashboards.recording_rules() if not RECORD_NAME.match(name)]
    assert not wrong


def rule_expressions() -> dict[str, str]:
    """Return every expression the rules evaluate, template queries included."""
    found = {name: expr for name, expr in dashboards.recording_rules().items()}
    for rule in ALERTS:
        found[rule["alert"]] = rule["expr"]
        for key, text in rule["annotations"].items():
            for index, action in enumerate(TEMPLATE_QUERY.findall(text)):
                for literal in re.findall(r'"([^"]*)"', action):
                    found[f"{rule['alert']} {key} query {index}"] = literal.replace("%q", '"x"')
    return found


def test_rules_read_only_recorded_or_documented_metrics() -> None:
    known = dashboards.series_names() - dashboards.PLANNED_METRICS.keys()
    known |= dashboards.recording_rules().keys()
    unknown = {
        name: sorted(dashboards.metric_names(expr) - known)
        for name, expr in rule_expressions().items()
        if dashboards.metric_names(expr) - known
    }
    assert not unknown, f"unknown metrics (add them to tests/deploy/dashboards.py): {unknown}"
    assert any("query" in name for name in rule_expressions()), "template queries were not found"


def test_every_threshold_is_read_and_documented() -> None:
    thresholds = [
        rule["record"] for rule in yaml.safe_load(THRESHOLDS.read_text())["groups"][0]["rules"]
    ]
    readers = set().union(
        *(dashboards.metric_names(expr) for name, expr in rule_expressions().items())
    )
    doc = ALERTS_DOC.read_text()
    for threshold in thresholds:
        assert threshold in readers, f"{threshold} is read by no rule"
        assert f"`{threshold}`" in doc, f"docs/alerts.md does not document {threshold}"
