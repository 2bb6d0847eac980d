"""The chart's values: schema, required values, documentation, and the shared files/ folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, RELEASE, WITH_CRDS, render, template, values_file

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def write_values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return path


def test_bad_values_fail_schema_validation(helm: str, tmp_path: Path) -> None:
    bad = write_values(
        tmp_path,
        """
store:
  dsn: chdb:///var/lib/uptake/store
pseudonymKey:
  value: k
ingest:
  replicaCount: two
  replicas: 3
config:
  logLevel: LOUD
  minGroupSize: 2
serviceMonitor:
  interval: often
tracing:
  sampler: sometimes
  samplerArg: 2
  resourceAttributes:
    team: a,b
""",
    )
    result = template(helm, "-f", bad)
    assert result.returncode != 0
    error = result.stderr
    assert "values don't meet the specifications of the schema" in error
    for expected in (
        "'/ingest/replicaCount': got string, want integer",
        "'/ingest': additional properties 'replicas' not allowed",
        "'/store/dsn': 'chdb:///var/lib/uptake/store' does not match pattern",
        "'/config/logLevel'",
        "'/config/minGroupSize': minimum: got 2, want 3",
        "'/serviceMonitor/interval': 'often' does not match pattern",
        "'/tracing/sampler'",
        "'/tracing/samplerArg': maximum: got 2, want 1",
        "'/tracing/resourceAttributes/team': 'a,b' does not match pattern",
    ):
        assert expected in error, f"{expected!r} missing from:\n{error}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            "pseudonymKey: {value: k}\napiKeys: {value: k}",
            "store.dsn is required: the ClickHouse HTTP(S) URL without password",
        ),
        (
            "store: {dsn: 'http://u@ch:8123/db'}\npseudonymKey: {value: k}",
            "apiKeys: set apiKeys.existingSecret.name (a Secret you manage) or apiKeys.value",
        ),
        (
            "store: {dsn: 'http://u@ch:8123/db'}\napiKeys: {value: k}",
            "pseudonymKey: set pseudonymKey.existingSecret.name (a Secret you manage) or "
            "pseudonymKey.value",
        ),
        (
            "store: {dsn: 'https://u:hunter2@ch:8443/db'}\n"
            "pseudonymKey: {value: k}\napiKeys: {value: k}",
            "store.dsn must not contain the password",
        ),
        (
            "store: {dsn: 'http://u@ch:8123/db'}\npseudonymKey: {value: k}\napiKeys: {value: k}\n"
            "config: {shutdownDelaySeconds: 20, shutdownGraceSeconds: 15}",
            "ingest.terminationGracePeriodSeconds (30) must exceed "
            "config.shutdownDelaySeconds + config.shutdownGraceSeconds (20 + 15)",
        ),
        (
            "store: {dsn: 'http://u@ch:8123/db'}\npseudonymKey: {value: k}\napiKeys: {value: k}\n"
            "ingest: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 3}}",
            "ingest.autoscaling.minReplicas (5) must not exceed ingest.autoscaling.maxReplicas (3)",
        ),
        (
            "store: {dsn: 'http://u@ch:8123/db'}\npseudonymKey: {value: k}\napiKeys: {value: k}\n"
            "tracing: {enabled: true}",
            "tracing.endpoint is required when tracing.enabled",
        ),
    ],
    ids=[
        "no-dsn",
        "no-api-keys",
        "no-pseudonym-key",
        "password-in-dsn",
        "grace-too-short",
        "hpa-min-over-max",
        "tracing-without-endpoint",
    ],
)
def test_missing_or_inconsistent_values_fail_with_a_clear_message(
    helm: str, tmp_path: Path, values: str, message: str
) -> None:
    result = template(helm, "-f", write_values(tmp_path, values))
    assert result.returncode != 0
    assert message in result.stderr


def schema_value_paths(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Return every value's dotted path with its schema, down to free-form objects."""
    paths: dict[str, dict[str, Any]] = {}
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        resolved = resolve(sub)
        if "properties" in resolved:
            paths |= schema_value_paths(resolved, f"{path}.")
        else:
            paths[path] = sub
    return paths


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    resolved: dict[str, Any] = SCHEMA["definitions"][ref.rsplit("/", 1)[-1]]
    return resolved


VALUE_PATHS = {p: s for p, s in schema_value_paths(SCHEMA).items() if p != "global"}


def default_paths(node: Any, prefix: str = "") -> set[str]:
    """Return the dotted paths of values.yaml down to the schema's values."""
    if prefix.rstrip(".") in VALUE_PATHS or not isinstance(node, dict):
        return {prefix.rstrip(".")}
    return set().union(*(default_paths(v, f"{prefix}{k}.") for k, v in node.items()))


def test_schema_and_values_yaml_cover_each_other() -> None:
    assert default_paths(DEFAULTS) == set(VALUE_PATHS)
    for path, schema in VALUE_PATHS.items():
        assert schema.get("description"), f"{path} has no description in the schema"
        assert {"type", "enum"} & set(resolve(schema)), f"{path} has no type in the schema"


def test_schema_forbids_unknown_keys_in_every_chart_section() -> None:
    def check(node: dict[str, Any], where: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, where
            for key, sub in node["properties"].items():
                check(resolve(sub), f"{where}.{key}")

    check(SCHEMA, "values")


def commented_keys() -> dict[str, bool]:
    """Map each key path of values.yaml to whether a '# --' comment documents it."""
    found: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = re.match(r"^( *)([A-Za-z_][\w-]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            found[".".join(k for _, k in stack)] = any(c.startswith("# --") for c in comment)
        comment = []
    return found


def test_every_value_is_commented_in_values_yaml() -> None:
    documented = commented_keys()
    missing = [p for p in VALUE_PATHS if not documented.get(p)]
    assert not missing, f"values without a '# --' comment: {missing}"


def test_chart_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    missing = [p for p in VALUE_PATHS if f"| `{p}` |" not in readme]
    assert not missing, f"values missing from the README table: {missing}"


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """Copy the chart with sample rule and dashboard files in place of the real ones."""
    copy = tmp_path / "uptake"
    shutil.copytree(CHART, copy)
    for folder in ("rules", "dashboards"):
        shutil.rmtree(copy / "files" / folder, ignore_errors=True)
        (copy / "files" / folder).mkdir()
    return copy


SAMPLE_RULES = """\
groups:
  - name: sample
    rules:
      - alert: SampleDown
        expr: up{job="uptake"} == 0
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "{{ $labels.instance }} is down"
"""
SAMPLE_DASHBOARD = {"title": "Uptake / Sample", "schemaVersion": 41, "panels": []}


def test_rule_and_dashboard_files_become_objects(helm: str, chart_copy: Path) -> None:
    (chart_copy / "files" / "rules" / "sample_alerts.rules.yml").write_text(SAMPLE_RULES)
    dashboard = json.dumps(SAMPLE_DASHBOARD, indent=2)
    (chart_copy / "files" / "dashboards" / "sample.json").write_text(dashboard)
    r = render(helm, "-f", values_file("everything"), *WITH_CRDS, chart=chart_copy)
    (rule,) = r.kinds("PrometheusRule")
    assert rule["metadata"]["name"] == f"{RELEASE}-uptake-sample-alerts-rules"
    assert rule["spec"] == yaml.safe_load(SAMPLE_RULES)
    (cm,) = [c for c in r.kinds("ConfigMap") if "-dashboard-" in c["metadata"]["name"]]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Uptake"}
    assert json.loads(cm["data"]["sample.json"]) == SAMPLE_DASHBOARD


def test_absent_rule_and_dashboard_folders_render_nothing(helm: str, chart_copy: Path) -> None:
    shutil.rmtree(chart_copy / "files" / "rules")
    shutil.rmtree(chart_copy / "files" / "dashboards")
    r = render(helm, "-f", values_file("everything"), *WITH_CRDS, chart=chart_copy)
    assert not r.kinds("PrometheusRule")
    assert not [c for c in r.kinds("ConfigMap") if "-dashboard-" in c["metadata"]["name"]]
    assert r.kinds("ServiceMonitor")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rules/broken.yaml", "rule_files: []\n", "rules/broken.yaml is not a Prometheus rule"),
        ("dashboards/broken.json", "{not json", "dashboards/broken.json is not valid JSON"),
    ],
    ids=["rules", "dashboard"],
)
def test_malformed_files_fail_naming_the_file(
    helm: str, chart_copy: Path, name: str, content: str, message: str
) -> None:
    (chart_copy / "files" / name).write_text(content)
    result = template(helm, "-f", values_file("everything"), *WITH_CRDS, chart=chart_copy)
    assert result.returncode != 0
    assert message in result.stderr
