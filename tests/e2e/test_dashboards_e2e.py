"""Every dashboard query against the real service, simulator and Prometheus with the chart's rules.

The service ingests eight weeks of simulated adoption (seeded, backdated). A
real Prometheus first gets the history the KPI exporter would have exported
over those weeks: one snapshot a day, computed from the same store with the
same privacy rules, backfilled with promtool. It then scrapes the restarted
service and a tool that embeds the SDK (live traffic, some of it rejected for a
skewed clock), and evaluates the chart's rule files. Every panel, variable and
annotation query of every dashboard runs through Prometheus' HTTP API the way
Grafana sends it (instant or range, template variables substituted) and must
answer without error and with data.

The answers are saved as JSON (`dashboard-data.json` in the test's temporary
directory, and at $UPTAKE_DASHBOARD_DATA when set) for
scripts/render_dashboards.py, which draws the pictures of docs/dashboards.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import uptake
from tests.conftest import require_tool
from tests.deploy import dashboards
from tests.e2e.forms_tool import ToolHost, forms_people, track_forms, write_registry
from tests.support.prometheus import Prometheus, PrometheusError, backfill, exporter_history
from tests.support.servers import ServerProcess, free_port
from uptake_server.simulate import default_scenario

pytestmark = pytest.mark.slow

SEED, DAYS, USERS = 7, 56, 400
DAY = 86_400
# Seconds of live scrapes before the queries run, so rates and quantiles have
# data (a minute when collecting for the pictures); the longest wait for every
# query to have some.
MIN_LIVE_SECONDS = 60.0 if os.environ.get("UPTAKE_DASHBOARD_DATA") else 12.0
MAX_WAIT_SECONDS = MIN_LIVE_SECONDS + 48.0
DRILLDOWN = "Uptake / Tool drill-down"
# Queries that answer nothing by design, and why. Each must still run without error.
# (None now: the simulator records a roadshow and a webinar, whose 14 days after are
# over, so the activity annotations and the table of their effect have data.)
EXPECTED_EMPTY: dict[tuple[str, str, str, str], str] = {}


@dataclass
class Stack:
    """The running service, tool and Prometheus, and what the tests collected."""

    prometheus: Prometheus
    history: Path  # the backfilled OpenMetrics
    history_times: list[float]
    live_since: float
    collected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_tool("prometheus", install="apt-get install prometheus")
    promtool = require_tool("promtool", install="apt-get install prometheus")
    workdir = tmp_path_factory.mktemp("dashboards")
    now = dt.datetime.now(dt.UTC)
    registry = workdir / "registry.yaml"
    write_registry(registry, default_scenario(seed=SEED, days=DAYS, users=USERS), now)
    server = ServerProcess(
        workdir / "var",
        extra_args=["--kpi-refresh-seconds", "1", "--registry-file", str(registry)],
    )
    instance = server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    host_port = free_port()
    prometheus = Prometheus(
        prometheus_bin,
        workdir / "prometheus",
        jobs={"uptake": [instance], "tools": [f"127.0.0.1:{host_port}"]},
        rule_files=dashboards.rule_files(),
        retention="120d",
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(server)
        simulate(server.target)
        client = uptake.Client(server.target)
        for person in forms_people():
            track_forms(client, person, at=now - person.ago)
        assert client.close(timeout=30), client.stats()
        assert server.stop() == 0
        # One snapshot a day back to the first go-live, and one four minutes after
        # a week and two weeks ago: rules evaluated during the test look back that
        # far (offset 1w, 14d) and must find a sample within Prometheus' lookback.
        t0 = float(int(time.time()))
        times = [t0 - days * DAY for days in range(1, DAYS - 1)]
        times += [t0 - 7 * DAY + 240, t0 - 14 * DAY + 240]
        history = workdir / "history.om"
        exporter_history(
            data_dir=server.data_dir,
            registry_file=registry,
            times=times,
            labels={"job": "uptake", "instance": instance},
            out=history,
        )
        backfill(promtool, history, prometheus.data_dir)
        server.start()
        host = ToolHost(server.target, port=host_port)
        cleanup.callback(host.stop)
        cleanup.enter_context(prometheus)
        running = Stack(prometheus, history, sorted(times), time.time())
        cleanup.callback(save, running, workdir)
        wait_for_data(running)
        yield running


def simulate(target: str) -> None:
    """Run `uptake-server simulate` against the server; fail with its output."""
    command = [sys.executable, "-m", "uptake_server", "simulate", "--target", target]
    command += ["--seed", str(SEED), "--days", str(DAYS), "--users", str(USERS), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def wait_for_data(stack: Stack) -> None:
    """Wait for a few scrapes and rule evaluations: until every query has data, or long enough."""
    required = [q for q in dashboards.queries() if key(q) not in EXPECTED_EMPTY]
    deadline = stack.live_since + MAX_WAIT_SECONDS
    while time.time() < deadline:
        time.sleep(1)
        if time.time() < stack.live_since + MIN_LIVE_SECONDS:
            continue
        try:
            if all(has_data(stack.prometheus.query(q.expr)) for q in required):
                return
        except (OSError, PrometheusError):
            continue  # the tests report which query fails, and why


def key(query: dashboards.Query) -> tuple[str, str, str, str]:
    """Return what names a query in EXPECTED_EMPTY."""
    return (query.dashboard, query.kind, query.name, query.ref_id)


def has_data(result: Sequence[dict[str, Any]]) -> bool:
    """Return whether an instant or range answer holds at least one number."""
    for series in result:
        points = series.get("values") or [series.get("value")]
        if any(point and math.isfinite(float(point[1])) for point in points):
            return True
    return False


def answer(stack: Stack, query: dashboards.Query, *, at: float) -> dict[str, Any]:
    """Run one query as Grafana does; return the record saved for the pictures."""
    record: dict[str, Any] = {**asdict(query), "error": None}
    prometheus = stack.prometheus
    try:
        if query.instant:
            record["instant"] = prometheus.query(query.expr, at=at)
        else:
            record["live"] = prometheus.query_range(
                query.expr, start=stack.live_since, end=at, step=2
            )
            # Steps on the daily history snapshots, so each step finds one.
            first, last = stack.history_times[0], stack.history_times[-1]
            steps = int((last - first) // DAY)
            record["history"] = prometheus.query_range(
                query.expr, start=last - steps * DAY, end=last, step=DAY
            )
    except PrometheusError as exc:
        record["error"] = str(exc)
    return record


def collect(stack: Stack, name: str, queries: Sequence[dashboards.Query]) -> list[dict[str, Any]]:
    """Run queries at one instant; keep the records under `name` for the JSON."""
    at = time.time()
    records = [answer(stack, query, at=at) for query in queries]
    stack.collected[name] = records
    return records


def answered(record: dict[str, Any]) -> bool:
    """Return whether a record holds data (the instant answer, or the live range)."""
    return has_data(record.get("instant") or record.get("live") or [])


def save(stack: Stack, workdir: Path) -> None:
    """Write what the tests collected, for scripts/render_dashboards.py."""
    document = {
        "generated_at": time.time(),
        "live_since": stack.live_since,
        "history_times": stack.history_times,
        "scenario": {"seed": SEED, "days": DAYS, "users": USERS},
        "runs": stack.collected,
    }
    text = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    (workdir / "dashboard-data.json").write_bytes(text)
    extra = os.environ.get("UPTAKE_DASHBOARD_DATA")
    if extra:
        Path(extra).parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same answers give the same file.
        Path(extra).write_bytes(gzip.compress(text, mtime=0) if extra.endswith(".gz") else text)


# Tests ---------------------------------------------------------------------------


def test_the_rule_files_pass_promtool_check() -> None:
    promtool = require_tool("promtool", install="apt-get install prometheus")
    files = [str(path) for path in dashboards.rule_files()]
    assert len(files) == 4
    result = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    groups = stack.prometheus.api("rules")["groups"]
    loaded = {group["name"]: group for group in groups}
    assert set(loaded) == {group["name"] for group in dashboards.rule_groups()}
    for group in dashboards.rule_groups():
        rules = loaded[group["name"]]["rules"]
        assert len(rules) == len(group["rules"]), group["name"]
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_every_dashboard_query_answers_with_data(stack: Stack) -> None:
    queries = dashboards.queries()
    assert len(queries) > 50
    records = collect(stack, "all", queries)
    errors = [f"{q}: {r['error']}" for q, r in zip(queries, records, strict=True) if r["error"]]
    assert not errors, "\n".join(errors)
    empty = {key(q) for q, r in zip(queries, records, strict=True) if not answered(r)}
    missing = sorted(f"{q}: {q.expr}" for q in queries if key(q) in empty - EXPECTED_EMPTY.keys())
    assert not missing, "no data for:\n" + "\n".join(missing)
    assert empty == set(EXPECTED_EMPTY), "expected empty, but answered: " + str(
        set(EXPECTED_EMPTY) - empty
    )
    # Among them the queries that compare with the past (offset 1w, 14d): they
    # answered from the backfilled history.
    assert len([q for q in queries if q.history_seconds >= 6 * DAY]) >= 2
    stack.collected["alerts"] = stack.prometheus.api("alerts")["alerts"]


def test_the_drilldown_has_data_for_a_selected_tool(stack: Stack) -> None:
    tools = sorted(
        s["metric"]["tool"] for s in stack.prometheus.query("group by (tool) (uptake_active_users)")
    )
    assert set(tools) == {"wiki", "chat", "crm", "docs", "forms"}
    per_tool = {}
    for tool in tools:
        queries = [q for q in dashboards.queries(values={"tool": tool}) if q.dashboard == DRILLDOWN]
        per_tool[tool] = collect(stack, f"drilldown:{tool}", queries)
    panels = [key(q) for q in queries]
    for tool, records in per_tool.items():
        errors = [r["error"] for r in records if r["error"]]
        assert not errors, f"{tool}: {errors}"
    # Privacy suppression withholds some figures of some tools at times; every
    # panel must show data for at least one tool.
    missing = [
        panel
        for index, panel in enumerate(panels)
        if panel not in EXPECTED_EMPTY
        and not any(answered(records[index]) for records in per_tool.values())
    ]
    assert not missing, missing
    # Forms has every figure at any hour; its weekly cohorts depend on the weekday. It
    # had no adoption activity: only the simulated CRM and wiki have some to mark.
    activities = (DRILLDOWN, "annotation", "Adoption activities", "")
    forms = [
        panel
        for panel, record in zip(panels, per_tool["forms"], strict=True)
        if panel not in EXPECTED_EMPTY and not answered(record)
    ]
    assert activities in forms, "Forms had no activity, yet its annotation shows one"
    forms.remove(activities)
    assert forms in ([], [(DRILLDOWN, "panel", "Retention of weekly cohorts", "A")]), forms
    marked = [
        tool for tool, records in per_tool.items() if answered(records[panels.index(activities)])
    ]
    assert sorted(marked) == ["crm", "wiki"]


def test_prometheus_holds_the_history_the_exporter_computed(stack: Stack) -> None:
    at = stack.history_times[len(stack.history_times) // 2]
    families = text_string_to_metric_families(stack.history.read_text())
    written = {
        (sample.labels["tool"], sample.labels["window"]): sample.value
        for family in families
        if family.name == "uptake_active_users"
        for sample in family.samples
        if sample.timestamp is not None and float(sample.timestamp) == at
    }
    assert len(written) >= 4
    read = {
        (s["metric"]["tool"], s["metric"]["window"]): float(s["value"][1])
        for s in stack.prometheus.query("uptake_active_users", at=at)
    }
    assert read == written
