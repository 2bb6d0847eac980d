"""Static checks of the Grafana dashboards shipped in the chart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool
from tests.deploy import dashboards
from tests.deploy.dashboards import Query

DATASOURCE_UID = "${datasource}"
TITLES = {"Uptake / Adoption overview", "Uptake / Tool drill-down", "Uptake / Service"}
ADOPTION_TITLES = TITLES - {"Uptake / Service"}
# What each dashboard must show (from the dashboard requirements), as series or
# recording rules read by at least one of its panels.
REQUIRED_READS = {
    "Uptake / Adoption overview": {
        "uptake_active_users",  # 7- and 28-day active users
        "tool:uptake_adoption_target_users_28d:estimate",  # ... against target
        "uptake_adoption_target_ratio",
        "uptake_stickiness_ratio",
        "uptake_seat_utilisation_ratio",
        "tool:uptake_go_live_age:days",  # days since go-live
        "ALERTS",  # alerts firing
        "uptake_activity_start_timestamp_seconds",  # adoption activities ...
        "uptake_activity_uplift_ratio",  # ... and their measured effect
    },
    "Uptake / Tool drill-down": {
        "uptake_org_unit_active_users",
        "uptake_org_unit_stickiness_ratio",
        "uptake_lifecycle_users",
        "uptake_retention_ratio",
        "uptake_feature_users",
        "uptake_feature_breadth_ratio",
    },
    "Uptake / Service": {
        "job:uptake_ingest_requests:rate5m",  # ingest rate
        "job:uptake_ingest_request_duration_seconds:p99_rate5m",  # latency
        "job_reason:uptake_ingest_rejections:rate5m",  # rejections by reason
        "job:uptake_store_insert_duration_seconds:p99_rate5m",  # store latency
        "uptake_store_pending_events",
        "job:uptake_kpi_refresh_age:seconds",  # KPI refresh health
        "uptake_kpi_refresh_errors_total",
    },
}
PANEL_TYPES_WITHOUT_QUERIES = {"row", "alertlist", "text"}

MODELS = {path.name: dashboards.load_dashboard(path) for path in dashboards.dashboard_files()}
ALL_QUERIES = dashboards.queries()


def variables(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in model["templating"]["list"]}


def datasource_uses(model: dict[str, Any]) -> list[tuple[str, Any]]:
    """List every datasource reference of a dashboard with where it is."""
    uses: list[tuple[str, Any]] = []
    for panel in dashboards.panels(model):
        if panel["type"] == "row":
            continue
        uses.append((f"panel {panel['title']!r}", panel.get("datasource")))
        for target in panel.get("targets", []):
            uses.append((f"panel {panel['title']!r} {target['refId']}", target.get("datasource")))
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            uses.append((f"variable {variable['name']}", variable.get("datasource")))
    for annotation in model["annotations"]["list"]:
        if not annotation.get("builtIn"):
            uses.append((f"annotation {annotation['name']!r}", annotation.get("datasource")))
    return uses


def test_the_three_dashboards_ship_with_unique_uids() -> None:
    assert {model["title"] for model in MODELS.values()} == TITLES
    uids = [model["uid"] for model in MODELS.values()]
    assert len(set(uids)) == len(uids), uids


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dashboard_uses_a_current_schema_and_a_datasource_variable(name: str) -> None:
    model = MODELS[name]
    assert model["schemaVersion"] >= 39
    datasource = variables(model)["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    wrong = [
        where
        for where, use in datasource_uses(model)
        if use != {"type": "prometheus", "uid": DATASOURCE_UID}
    ]
    assert not wrong, f"{name}: datasource is not the $datasource variable in {wrong}"


@pytest.mark.parametrize(
    "name", sorted(name for name, model in MODELS.items() if model["title"] in ADOPTION_TITLES)
)
def test_adoption_dashboard_has_tool_and_org_unit_variables_and_go_live(name: str) -> None:
    model = MODELS[name]
    found = variables(model)
    for variable in ("tool", "org_unit"):
        assert found[variable]["type"] == "query"
        text = dashboards.variable_query(found[variable])
        assert text.startswith("label_values(") and text.endswith(f", {variable})"), text
    assert "$tool" in dashboards.variable_query(found["org_unit"]), "org units follow the tool"
    go_live = {a["name"]: a for a in model["annotations"]["list"]}["Go-live"]
    assert go_live["enable"] and go_live["useValueForTime"]
    # Grafana reads the value as a timestamp in milliseconds.
    assert "uptake_go_live_timestamp_seconds" in go_live["expr"]
    assert go_live["expr"].rstrip().endswith("* 1000")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_panel_ids_and_titles_are_unique_and_panels_do_not_overlap(name: str) -> None:
    every = list(dashboards.panels(MODELS[name]))
    ids = [panel["id"] for panel in every]
    assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
    titles = [panel["title"] for panel in every if panel["type"] != "row"]
    assert len(set(titles)) == len(titles), f"{name}: duplicate panel titles"
    cells: dict[tuple[int, int], str] = {}
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{name}: {panel['title']}"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{name}: {panel['title']!r} overlaps {other!r}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_panel_has_queries_with_unique_ref_ids(name: str) -> None:
    for panel in dashboards.panels(MODELS[name]):
        if panel["type"] in PANEL_TYPES_WITHOUT_QUERIES:
            continue
        ref_ids = [target["refId"] for target in panel.get("targets", [])]
        assert ref_ids, f"{name}: panel {panel['title']!r} has no query"
        assert len(set(ref_ids)) == len(ref_ids), f"{name}: {panel['title']!r} {ref_ids}"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{name}: {panel['title']!r} {target['refId']}"


@pytest.mark.parametrize("title", sorted(TITLES))
def test_dashboard_shows_what_it_promises(title: str) -> None:
    read = set().union(
        *(dashboards.metric_names(q.expr) for q in ALL_QUERIES if q.dashboard == title)
    )
    missing = REQUIRED_READS[title] - read
    assert not missing, f"{title} has no panel reading {sorted(missing)}"


def test_every_query_parses_in_prometheus(tmp_path: Path) -> None:
    promtool = require_tool("promtool", install="sudo apt-get install prometheus")
    # promtool has no parse-only command, but `check rules` runs Prometheus' own
    # parser (with type checks) on every expression: one group per query names it.
    groups = [
        {
            "name": f"{index}: {query}",
            "rules": [{"record": f"dashboard_query_{index}", "expr": query.expr}],
        }
        for index, query in enumerate(ALL_QUERIES)
    ]
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALL_QUERIES)} rules found" in result.stdout


def test_every_query_reads_only_recorded_or_documented_metrics() -> None:
    known = dashboards.series_names() | dashboards.recording_rules().keys()
    unknown = {
        str(query): sorted(dashboards.metric_names(query.expr) - known)
        for query in ALL_QUERIES
        if dashboards.metric_names(query.expr) - known
    }
    assert not unknown, f"unknown metrics (add them to tests/deploy/dashboards.py): {unknown}"
    assert all(dashboards.metric_names(query.expr) for query in ALL_QUERIES)


def test_planned_metrics_are_read_only_by_disabled_annotations() -> None:
    for query in ALL_QUERIES:
        if dashboards.metric_names(query.expr) & dashboards.PLANNED_METRICS.keys():
            assert (query.kind, query.enabled) == ("annotation", False), str(query)


def test_queries_substitute_every_variable() -> None:
    picked = dashboards.queries(values={"tool": "wiki"}, rate_interval="2m", range_="6h")
    assert len(picked) == len(ALL_QUERIES)
    assert not [str(query) for query in picked if "$" in query.expr.replace("$1", "")]
    exprs = "\n".join(query.expr for query in picked)
    assert 'tool=~"wiki"' in exprs and 'tool=~".*"' not in exprs
    assert "[2m]" in exprs and "[6h]" in exprs


def test_unknown_variable_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"panel 'X' A: unknown template variable \$team"):
        dashboards.substitute('up{team="$team"}', values={}, where="panel 'X' A")


def test_history_reaches_through_recording_rules() -> None:
    by_name = {(q.dashboard, q.name, q.ref_id): q for q in ALL_QUERIES}
    overview = "Uptake / Adoption overview"
    growth = by_name[(overview, "Growth of 7-day active users over 14 days", "A")]
    weekly = by_name[(overview, "Stickiness (1-day / 28-day active users)", "B")]
    now = by_name[(overview, "Stickiness (1-day / 28-day active users)", "A")]
    assert growth.history_seconds == 14 * 86400
    assert weekly.history_seconds == 6 * 86400 + 23 * 3600
    assert now.history_seconds == 0


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job, le) (rate(a_bucket{code=~"5.."}[5m] offset 1w))', {"a_bucket"}),
        ("max(b) by (tool) / on (tool) group_left (x) c:d:e", {"b", "c:d:e"}),
        ('label_replace(f, "dst", "$1", "src", "(.*)") > bool 2e3', {"f"}),
        ('{__name__="g", a="b"} or absent(h) unless vector(1) and time() > Inf', {"g", "h"}),
        ("topk(5, i[1h:5m]) # comment naming j", {"i"}),
    ],
)
def test_metric_names_finds_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert dashboards.metric_names(expr) == names


def test_query_names_its_place() -> None:
    query = Query(
        dashboard="D",
        kind="panel",
        name="P",
        ref_id="A",
        expr="up",
        instant=False,
        enabled=True,
        history_seconds=0,
    )
    assert str(query) == "D / panel 'P' / A"
