"""The CSV org-unit enricher fills missing org units and follows changes of its file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uptake_server.enrich import CsvOrgUnits
from uptake_server.errors import ConfigError


class Event:
    def __init__(self, user_id: str, org_unit: str = "") -> None:
        self.user_id, self.org_unit = user_id, org_unit
        self.tool, self.action, self.feature = "wiki", "view", ""


def test_fills_only_missing_org_units_and_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "directory.csv"
    path.write_text("user_id,org_unit,email\nalice,sales,a@x\nbob,support,b@x\n")
    clock = [0.0]
    enricher = CsvOrgUnits(path, clock=lambda: clock[0])
    events = [Event("alice"), Event("bob", "engineering"), Event("carol")]
    enricher.enrich(events)
    assert [e.org_unit for e in events] == ["sales", "engineering", ""]
    path.write_text("user_id,org_unit\nalice,finance\ncarol,legal\n")
    os.utime(path, ns=(1, 1))  # a different stamp, whatever the clock resolution
    fresh = [Event("alice"), Event("carol")]
    enricher.enrich(fresh)  # checked at most once a second: not yet
    assert [e.org_unit for e in fresh] == ["sales", ""]
    clock[0] = 2.0
    enricher.enrich(fresh := [Event("alice"), Event("carol")])
    assert [e.org_unit for e in fresh] == ["finance", "legal"]


def test_a_broken_update_keeps_the_previous_mapping(tmp_path: Path) -> None:
    path = tmp_path / "directory.csv"
    path.write_text("user_id,org_unit\nalice,sales\n")
    clock = [0.0]
    enricher = CsvOrgUnits(path, clock=lambda: clock[0])
    path.write_text("who,where\nalice,finance\n")
    clock[0] = 5.0
    enricher.enrich(events := [Event("alice")])
    assert events[0].org_unit == "sales"


def test_a_file_without_the_columns_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "directory.csv"
    path.write_text("who,where\n")
    with pytest.raises(ConfigError, match=r"directory\.csv: the header lacks org_unit, user_id"):
        CsvOrgUnits(path)
