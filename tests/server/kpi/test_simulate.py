"""The simulator: deterministic adoption with a stall, a laggard unit and quiet weekends."""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from uptake_server.app import Service
from uptake_server.config import load_settings
from uptake_server.simulate import default_scenario, generate
from uptake_server.simulate.cli import add_arguments, run

NOW = dt.datetime(2026, 3, 18, 15, 30, tzinfo=dt.UTC)


def flatten(seed: int, days: int = 56, users: int = 200) -> list:  # type: ignore[type-arg]
    scenario = default_scenario(seed=seed, days=days, users=users)
    return [e for day in generate(scenario, now=NOW) for e in day]


def test_the_same_seed_gives_the_same_events() -> None:
    assert flatten(7) == flatten(7)
    assert flatten(7) != flatten(8)


def test_the_story_the_dashboards_show() -> None:
    events = flatten(3)
    assert all(e.at <= NOW for e in events)
    assert min(e.at for e in events) >= NOW - dt.timedelta(days=56)
    assert not [e for e in events if e.org_unit == "legal"]  # never adopts
    weekday = Counter(e.at.weekday() < 5 for e in events)
    assert weekday[True] / 5 > 4 * weekday[False] / 2  # quieter weekends
    users = {t: {e.user_id for e in events if e.tool == t} for t in ("wiki", "chat", "crm")}
    assert len(users["crm"]) < len(users["wiki"]) / 3  # the stalled tool
    first = {t: min(e.at for e in events if e.tool == t) for t in ("wiki", "docs")}
    assert first["docs"] > first["wiki"] + dt.timedelta(days=20)  # go-live dates differ


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    settings = load_settings(
        {
            "dev": True,
            "data_dir": str(tmp_path / "var"),
            "grpc_listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
            "kpi_enabled": False,
        },
        environ={},
    )
    svc = Service(settings)
    svc.start()
    yield svc
    svc.stop()


def test_simulate_sends_everything_through_the_sdk(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry.yaml"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--target",
            service.grpc_target,
            "--days",
            "10",
            "--users",
            "40",
            "--seed",
            "5",
            "--no-progress",
            "--registry-out",
            str(registry),
        ]
    )
    code = run(args)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0, err
    assert " 0 rejected" in err
    sent = int(err.split("sent ")[1].split(" events")[0].replace(",", ""))
    assert sent > 100
    (stored,) = service.store.query("SELECT count() FROM events")[0]
    assert stored == sent
    assert "licensed_seats" in registry.read_text()
