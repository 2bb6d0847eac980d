"""Read the Uptake dashboards and rule files: queries, metric names and rule names.

The static deploy tests use it, and so can an end-to-end test that runs every
dashboard query against a Prometheus scraping the real service: `queries()` gives
each panel, variable and annotation query of every dashboard with its template
variables substituted, ready for Prometheus' HTTP API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = ROOT / "deploy" / "helm" / "uptake" / "files"
DASHBOARD_DIR = CHART_FILES / "dashboards"
RULES_DIR = CHART_FILES / "rules"

# The one list of metric names that rules and dashboards may read, besides the
# recording rules they define themselves; the value is the metric type.
INGEST_METRICS = {
    "uptake_ingest_events_total": "counter",
    "uptake_ingest_rejections_total": "counter",
    "uptake_ingest_requests_total": "counter",
    "uptake_ingest_request_duration_seconds": "histogram",
    "uptake_ingest_batch_events": "histogram",
    "uptake_store_insert_duration_seconds": "histogram",
    "uptake_store_insert_rows": "histogram",
    "uptake_store_pending_events": "gauge",
    "uptake_store_up": "gauge",
    "uptake_build_info": "gauge",
}
KPI_METRICS = {
    "uptake_active_users": "gauge",
    "uptake_org_unit_active_users": "gauge",
    "uptake_stickiness_ratio": "gauge",
    "uptake_org_unit_stickiness_ratio": "gauge",
    "uptake_lifecycle_users": "gauge",
    "uptake_retention_ratio": "gauge",
    "uptake_seat_utilisation_ratio": "gauge",
    "uptake_feature_users": "gauge",
    "uptake_feature_breadth_ratio": "gauge",
    "uptake_go_live_timestamp_seconds": "gauge",
    "uptake_adoption_target_ratio": "gauge",
    "uptake_last_event_timestamp_seconds": "gauge",
    "uptake_kpi_refresh_last_success_timestamp_seconds": "gauge",
    "uptake_kpi_refresh_duration_seconds": "gauge",
    "uptake_kpi_refresh_errors_total": "counter",
    "uptake_kpi_series_suppressed": "gauge",
    "uptake_kpi_definitions_info": "gauge",
}
# Adoption activities (docs/activities.md), exported by the KPI exporter.
ACTIVITY_METRICS = {
    "uptake_activity_start_timestamp_seconds": "gauge",
    "uptake_activity_uplift_ratio": "gauge",
}
# Exported by the host applications that embed the SDK, under their own jobs.
SDK_METRICS = {"uptake_sdk_events_total": "counter"}
# Written by Prometheus itself for every pending or firing alert.
PROMETHEUS_METRICS = {"ALERTS": "gauge"}
# Announced but not exported yet: read only by annotations that are off by default.
PLANNED_METRICS: dict[str, str] = {}
DOCUMENTED_METRICS = {
    **INGEST_METRICS,
    **KPI_METRICS,
    **ACTIVITY_METRICS,
    **SDK_METRICS,
    **PROMETHEUS_METRICS,
    **PLANNED_METRICS,
}

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def series_names() -> set[str]:
    """Return every series name the documented metrics expose."""
    names = set()
    for name, kind in DOCUMENTED_METRICS.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in _HISTOGRAM_SUFFIXES)
    return names


# Rule files -----------------------------------------------------------------------


def rule_files() -> list[Path]:
    """Return the Prometheus rule files shipped in the chart."""
    return sorted(RULES_DIR.glob("*.rules.yml"))


def rule_groups() -> list[dict[str, Any]]:
    """Return every rule group of every rule file."""
    groups: list[dict[str, Any]] = []
    for path in rule_files():
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def recording_rules() -> dict[str, str]:
    """Return the expression of every recording rule, by recorded name."""
    return {
        rule["record"]: rule["expr"]
        for group in rule_groups()
        for rule in group["rules"]
        if "record" in rule
    }


def alerting_rules() -> list[dict[str, Any]]:
    """Return every alerting rule as written in the rule files."""
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


# PromQL ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<number>(?:\d[\d.]*|\.\d+)(?:[eE][+-]?\d+)?\w*)
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<operator>=~|!~|!=|==|<=|>=|.)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may put "by (...)" between their name and their "(".
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}


def _tokens(expr: str) -> list[tuple[str, str]]:
    return [
        (match.lastgroup or "", match.group())
        for match in _TOKEN.finditer(expr)
        if match.lastgroup != "space"
    ]


def _skip_to(tokens: list[tuple[str, str]], start: int, closing: str) -> int:
    index = start
    while index < len(tokens) and tokens[index][1] != closing:
        index += 1
    return index


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects."""
    tokens = _tokens(expr)
    names: set[str] = set()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if text == "{":
            end = _skip_to(tokens, index, "}")
            names.update(_names_in_matchers(tokens[index + 1 : end]))
            index = end
        elif text == "[":
            index = _skip_to(tokens, index, "]")
        elif kind == "name" and text.lower() in _LABEL_LISTS and following == "(":
            index = _skip_to(tokens, index, ")")
        elif kind == "name" and text.lower() == "offset":
            index += 2 if following == "-" else 1
        elif kind == "name" and text.lower() in _AGGREGATIONS and following in _LABEL_LISTS:
            pass
        elif kind == "name" and text.lower() not in _KEYWORDS and following != "(":
            names.add(text)
        index += 1
    return names


def _names_in_matchers(tokens: list[tuple[str, str]]) -> set[str]:
    return {
        value[1][1:-1]
        for label, operator, value in zip(tokens, tokens[1:], tokens[2:], strict=False)
        if label[1] == "__name__" and operator[1] == "=" and value[0] == "string"
    }


def duration_seconds(text: str) -> float:
    """Return the seconds of a Prometheus duration such as 6d23h."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(number) * _DURATION_SECONDS[unit] for number, unit in parts)


def history_seconds(expr: str, rules: Mapping[str, str] | None = None) -> float:
    """Return how far back an expression reaches with `offset`, through recording rules.

    A query that reaches back further than Prometheus has data returns nothing,
    however healthy the service is.
    """
    rules = recording_rules() if rules is None else rules
    offsets = [duration_seconds(match.group(1)) for match in re.finditer(r"\boffset\s+(\w+)", expr)]
    for name in metric_names(expr) & rules.keys():
        offsets.append(history_seconds(rules[name], rules))
    return max(offsets, default=0.0)


# Dashboards -----------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    """Return the Grafana dashboard files shipped in the chart."""
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    """Return a dashboard's JSON model."""
    model: dict[str, Any] = json.loads(path.read_text())
    return model


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, the ones inside collapsed rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True, kw_only=True)
class Query:
    """One PromQL query of a dashboard, template variables substituted."""

    dashboard: str
    kind: str  # "panel", "variable" or "annotation"
    name: str  # panel title, variable name or annotation name
    ref_id: str
    expr: str
    instant: bool
    enabled: bool  # False for annotations that are off by default
    history_seconds: float  # how much Prometheus history the query needs to return data

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.kind} {self.name!r} / {self.ref_id}"


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.DOTALL)


def variable_query(variable: Mapping[str, Any]) -> str:
    """Return the raw query text of a query variable."""
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def label_values_as_promql(text: str) -> str:
    """Return the PromQL that yields what a label_values() variable query lists."""
    match = _LABEL_VALUES.match(text)
    if match is None:
        raise ValueError(f"not a label_values(metric, label) query: {text!r}")
    selector, label = match.group(1), match.group(2)
    if not selector:
        raise ValueError(f"label_values() without a metric lists every series: {text!r}")
    return f"group by ({label}) ({selector.strip()})"


def substitute(
    text: str,
    *,
    values: Mapping[str, str],
    where: str,
) -> str:
    """Replace Grafana template variables in a query; fail on any unknown one."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise ValueError(f"{where}: unknown template variable ${name} in {text!r}")
        return values[name]

    return _VARIABLE.sub(replace, text)


def _variable_values(
    dashboard: Mapping[str, Any],
    *,
    overrides: Mapping[str, str],
    builtins: Mapping[str, str],
) -> dict[str, str]:
    values = dict(builtins)
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        # Queries get Grafana's "All" value unless a value is given.
        values[name] = overrides.get(name, variable.get("allValue") or ".*")
    return values


def queries(
    *,
    values: Mapping[str, str] | None = None,
    rate_interval: str = "1m",
    interval: str = "15s",
    range_: str = "1h",
) -> list[Query]:
    """Return every query of every dashboard, ready to send to Prometheus.

    Args:
        values: template variable values, e.g. {"tool": "wiki"}; query variables
            default to Grafana's "All" (".*").
        rate_interval: what $__rate_interval stands for.
        interval: what $__interval stands for.
        range_: what $__range stands for (the dashboard time range).
    """
    range_s = duration_seconds(range_)
    builtins = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": range_,
        "__range_s": str(int(range_s)),
        "__range_ms": str(int(range_s * 1000)),
    }
    rules = recording_rules()
    found: list[Query] = []
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        variables = _variable_values(dashboard, overrides=values or {}, builtins=builtins)
        for kind, name, ref_id, template, options in _raw_queries(dashboard):
            expr = substitute(
                template, values=variables, where=f"{path.name}: {kind} {name!r} {ref_id}"
            )
            found.append(
                Query(
                    dashboard=dashboard["title"],
                    kind=kind,
                    name=name,
                    ref_id=ref_id,
                    expr=expr,
                    instant=options.get("instant", False),
                    enabled=options.get("enabled", True),
                    history_seconds=history_seconds(expr, rules),
                )
            )
    return found


def _raw_queries(
    dashboard: Mapping[str, Any],
) -> Iterator[tuple[str, str, str, str, dict[str, bool]]]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            promql = label_values_as_promql(variable_query(variable))
            yield "variable", variable["name"], "", promql, {"instant": True}
    for annotation in dashboard.get("annotations", {}).get("list", []):
        expr = annotation.get("expr") or annotation.get("target", {}).get("expr")
        if expr:
            yield "annotation", annotation["name"], "", expr, {"enabled": annotation["enable"]}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            instant = bool(target.get("instant")) and not target.get("range")
            yield "panel", panel["title"], target["refId"], target["expr"], {"instant": instant}
