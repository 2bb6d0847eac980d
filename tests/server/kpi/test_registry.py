"""The tool registry: validation errors name the file, the tool and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from uptake_server.errors import ConfigError
from uptake_server.registry import load_registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    return path


def test_a_valid_registry_loads(tmp_path: Path) -> None:
    registry = load_registry(
        write(
            tmp_path,
            "tools:\n  wiki:\n    name: Wiki\n    go_live: '2026-01-12'\n    licensed_seats: 1200\n"
            "    adoption_target: 0.6\n    core_actions: [page_edit]\n    features: [search]\n"
            "kpis:\n  - {name: wiki_editors, help: Editors, kind: users, action: page_edit,\n"
            "     window: 7d}\n",
        )
    )
    assert registry.tools["wiki"].licensed_seats == 1200
    assert registry.core_pairs() == ["wiki/page_edit"]
    assert registry.kpis[0].window == "7d"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tools:\n  wiki:\n    licensed_seats: -3\n", "tool 'wiki' field licensed_seats"),
        ("tools:\n  wiki:\n    go_live: soon\n", "tool 'wiki' field go_live"),
        ("tools:\n  wiki:\n    adoption_target: 1.5\n", "tool 'wiki' field adoption_target"),
        ("tools:\n  wiki:\n    core_actions: [Page Edit]\n", "tool 'wiki' field core_actions.0"),
        ("tools:\n  wiki:\n    seats: 3\n", "tool 'wiki' field seats"),
        ("tools:\n  Wiki:\n    name: x\n", "tool id 'Wiki': must be a lowercase slug"),
        ("kpis:\n  - {name: x, help: h, kind: nope, action: a}\n", "KPI 'x' field kind"),
        ("tools: [wiki]\n", "field tools"),
        ("tools:\n  wiki: {\n", "is not valid YAML"),
    ],
)
def test_errors_name_the_file_tool_and_field(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the tool registry .*nope\.yaml"):
        load_registry(tmp_path / "nope.yaml")
