"""The README stays true: every setting is in its configuration table with its default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from uptake_server.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def readme_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `UPTAKE_"):
            rows[line.split("`")[1]] = line
    return rows


def test_every_setting_is_documented_with_flag_and_default() -> None:
    rows = readme_rows()
    for f in dataclasses.fields(Settings):
        env = f.metadata["env"]
        assert env in rows, f"README configuration table lacks {env}"
        row = rows[env]
        assert f"`--{f.name.replace('_', '-')}`" in row, f"README row of {env} lacks its flag"
        default = f.default
        if isinstance(default, bool):
            expected = f"`{str(default).lower()}`"
        elif isinstance(default, int | float):
            expected = f"`{default}`"
        else:
            expected = f"`{default}`" if default else ""
        assert expected in row, f"README row of {env} does not show the default {expected}"


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    known = {f.metadata["env"] for f in dataclasses.fields(Settings)}
    assert set(readme_rows()) <= known


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    quick_start = text[: text.index("## What is where")]
    assert "make run" in quick_start and "make test" in quick_start
    assert "make test" in (ROOT / ".ci" / "run").read_text()
