"""KPI and enricher plugins: an example package installed with pip, discovered by entry point."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.kpi.conftest import KpiStore
from tests.server.kpi.reference import DAY_MS, Ev
from uptake_server.config import load_settings
from uptake_server.enrich import load_enrichers
from uptake_server.errors import ConfigError
from uptake_server.kpi.plugins import discover_kpis
from uptake_server.registry import parse_registry

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "uptake-example-kpi"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("uptake_example_kpi")]:
        del sys.modules[name]


def test_the_plugin_kpi_is_discovered_and_suppressed_like_the_built_ins(
    installed: Path, empty_store: KpiStore
) -> None:
    registry = parse_registry({"tools": {"wiki": {}}})
    kpis = discover_kpis(registry)
    assert "multi_feature_users" in [k.name for k in kpis]
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000) - 60_000
    events = []
    for user, unit in enumerate(["big"] * 6 + ["small"] * 2 + ["mid"] * 5):
        for feature in ("search", "export"):
            events.append(
                Ev("wiki", "view", user.to_bytes(16, "big"), unit, feature, now_ms - DAY_MS)
            )
    empty_store.insert(events)
    refresher = empty_store.refresher(registry)
    refresher._kpis = kpis  # the discovered set, plugin included
    snapshot = refresher.refresh(now=dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC))
    found = {
        (s.family, dict(s.labels).get("org_unit")): s.value
        for s in snapshot.series
        if "multi_feature" in s.family
    }
    # "small" (2 people) folds into (other) with the smallest visible unit, "mid".
    assert found == {
        ("uptake_multi_feature_users", None): 13,
        ("uptake_org_unit_multi_feature_users", "big"): 6,
        ("uptake_org_unit_multi_feature_users", "(other)"): 7,
    }


def test_a_clashing_plugin_name_is_refused(installed: Path) -> None:
    registry = parse_registry(
        {"kpis": [{"name": "multi_feature_users", "help": "x", "kind": "users", "action": "a"}]}
    )
    with pytest.raises(ConfigError, match="clashes with the one from the tool registry"):
        discover_kpis(registry)


def test_the_plugin_enricher_is_loaded_when_it_enables_itself(
    installed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({"dev": True}, environ={})
    assert load_enrichers(settings) == []
    monkeypatch.setenv("UPTAKE_EXAMPLE_DEFAULT_FEATURE", "search")
    (enricher,) = load_enrichers(settings)

    class Event:
        user_id, org_unit, tool, action, feature = "u", "", "wiki", "view", ""

    event = Event()
    enricher.enrich([event])
    assert event.feature == "search"
