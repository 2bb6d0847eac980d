"""The simulator's activities, measured end to end: the roadshow lifts, the webinar does not.

A seeded simulation (400 people, 56 days) goes through the SDK into a real service,
which records the scenario's activities through its ActivityService. The KPI
exporter then exports the uplift of both, and `uptake-server activities report`
(through the running server) gives the same figures with their group sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import urllib.request
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.server.activities.conftest import cli
from tests.server.test_service import settings_for
from uptake_server.app import Service
from uptake_server.simulate import default_scenario
from uptake_server.simulate.cli import add_arguments, run
from uptake_server.simulate.model import registry_document

SEED, DAYS, USERS = 42, 56, 400
ROADSHOW, WEBINAR = "crm-roadshow-sales", "wiki-webinar-tips"
# The roadshow wins about a third of the sales people without the CRM: their 7-day
# active users roughly double, against a flat comparison. The webinar changes nothing.
MIN_LIFT = 0.3
MAX_NO_LIFT = 0.1


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("simulated")
    registry = workdir / "registry.yaml"
    scenario = default_scenario(seed=SEED, days=DAYS, users=USERS)
    now = dt.datetime.now(dt.UTC)
    registry.write_text(yaml.safe_dump(registry_document(scenario, now=now)))
    service = Service(settings_for(workdir / "var", registry_file=str(registry)))
    service.start()
    try:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        argv = ["--target", service.grpc_target, "--seed", str(SEED), "--days", str(DAYS)]
        assert run(parser.parse_args([*argv, "--users", str(USERS), "--no-progress"])) == 0
        assert service.kpi is not None
        service.kpi.refresher.refresh()
        yield service
    finally:
        service.stop()


def test_the_scenario_has_a_roadshow_and_a_webinar() -> None:
    scenario = default_scenario(seed=SEED, days=DAYS, users=USERS)
    kinds = {a.id: (a.kind, a.org_units, a.lift > 0) for a in scenario.activities}
    assert kinds == {
        ROADSHOW: ("roadshow", ("sales",), True),
        WEBINAR: ("webinar", ("engineering", "support"), False),
    }
    # Too short a history for their 14 days before: left out.
    assert default_scenario(days=30).activities == ()


def test_the_roadshow_shows_a_lift_and_the_webinar_none(
    simulated: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    with urllib.request.urlopen(simulated.metrics_url, timeout=10) as response:
        text = response.read().decode()
    uplift = {
        sample.labels["activity"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "uptake_activity_uplift_ratio"
    }
    starts = {
        sample.labels["activity"]: sample.labels["kind"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "uptake_activity_start_timestamp_seconds"
    }
    assert starts == {ROADSHOW: "roadshow", WEBINAR: "webinar"}
    capsys.readouterr()
    data_dir = str(simulated.settings.data_dir)
    flags = ["--data-dir", data_dir, "--grpc-listen", simulated.grpc_target]
    code = cli(["activities", "report", "--format", "json", *flags])
    out = capsys.readouterr().out
    assert code == 0
    report = {row["activity"]: row for row in map(json.loads, out.splitlines())}
    with capsys.disabled():
        for name in (ROADSHOW, WEBINAR):
            row = report[name]
            t, c = row["targeted"], row["comparison"]
            print(
                f"\n{name}: uplift {row['uplift']:+.3f}; targeted {t['people_before']} / "
                f"{t['people_after']} people, mean 7-day active {t['mean_before']:.1f} -> "
                f"{t['mean_after']:.1f}; comparison ({', '.join(row['comparison_org_units'])}) "
                f"{c['people_before']} / {c['people_after']} people, "
                f"{c['mean_before']:.1f} -> {c['mean_after']:.1f}"
            )
    for name in (ROADSHOW, WEBINAR):
        assert report[name]["status"] == "measured", report[name]["reason"]
        assert report[name]["uplift"] == pytest.approx(uplift[name], abs=1e-9)
        assert report[name]["overlapping"] == []
    assert uplift[ROADSHOW] > MIN_LIFT
    assert abs(uplift[WEBINAR]) < MAX_NO_LIFT
    # Units with fewer than k CRM users still count, but are not named.
    named = report[ROADSHOW]["comparison_org_units"]
    assert named and set(named) <= {"engineering", "finance", "marketing", "support"}
    # Legal never adopts anything: no one of it is counted anywhere.
    assert report[WEBINAR]["comparison_org_units"] == ["finance", "marketing", "sales"]
