"""docs/sdk.md lists every option with its environment variable and its real default."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

from uptake._options import Options
from uptake._stats import OUTCOMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def test_the_configuration_table_matches_the_options() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(UPTAKE_\w+)` \| ([^|]+) \|", DOC.read_text(), re.M)
    documented = {name: (env, default.strip()) for name, env, default in rows}
    for spec in fields(Options):
        assert spec.name in documented, f"{spec.name} is missing from docs/sdk.md"
        env, default = documented[spec.name]
        assert env == spec.metadata["env"]
        value = spec.default
        assert value is not MISSING
        expected = "none" if value is None else f"`{str(value).lower()}`"
        assert default == expected, f"{spec.name}: documented {default}, really {expected}"


def test_every_outcome_is_explained() -> None:
    text = DOC.read_text()
    for outcome in OUTCOMES:
        if outcome != "delivered":
            assert f"| `{outcome}` |" in text, outcome
