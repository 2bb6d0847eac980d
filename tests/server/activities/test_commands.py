"""`uptake-server activities`: on the store itself, and through a server that holds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.activities.conftest import cli
from tests.server.test_service import settings_for
from uptake_server.app import Service

REGISTRY = """
tools:
  wiki: {name: Wiki}
org_units: [sales, support]
activities:
  - {id: wiki-launch, tool: wiki, kind: communication, title: Launch mail, start: 2026-01-12}
"""


EVENT = ["add", "--tool", "wiki", "--kind", "event", "--title", "x"]


@pytest.fixture
def where(tmp_path: Path) -> list[str]:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY)
    return ["--data-dir", str(tmp_path / "var"), "--registry-file", str(registry)]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(["activities", *argv])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_add_list_report_and_remove_on_the_store(
    where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    add = ["add", "--tool", "wiki", "--kind", "training", "--title", "Wiki basics"]
    add += ["--start", "2026-02-02", "--end", "2026-02-03T12:00Z", "--org-unit", "sales"]
    code, out, err = run(capsys, *add, *where)
    assert code == 0, err
    assert out.strip() == "training-wiki-2026-02-02"
    code, out, _ = run(capsys, "list", "--format", "json", *where)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["source"], r["org_units"]) for r in rows] == [
        ("training-wiki-2026-02-02", "cli", ["sales"]),
        ("wiki-launch", "registry", []),
    ]
    assert rows[0]["end_ms"] - rows[0]["start_ms"] == 36 * 3_600_000
    code, out, _ = run(capsys, "report", "--format", "json", *where)
    report = {r["activity"]: r for r in map(json.loads, out.splitlines())}
    assert report["training-wiki-2026-02-02"]["before"] == ["2026-01-19", "2026-02-01"]
    assert report["training-wiki-2026-02-02"]["after"] == ["2026-02-04", "2026-02-17"]
    assert report["wiki-launch"]["status"] == "no_comparison"
    code, _, err = run(capsys, "report", *where)
    assert code == 0
    code, _, err = run(capsys, "remove", "training-wiki-2026-02-02", *where)
    assert (code, "activity training-wiki-2026-02-02 removed" in err) == (0, True)
    code, out, _ = run(capsys, "list", "--format", "json", *where)
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["wiki-launch"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [*EVENT, "--start", "2026-02-31"],
            "--start '2026-02-31' is neither a date (2026-03-02) nor a time",
        ),
        (
            ["add", "--tool", "crm", "--kind", "event", "--title", "x", "--start", "2026-02-03"],
            "unknown tool 'crm'",
        ),
        (
            [*EVENT, "--start", "2026-02-03", "--org-unit", "legal"],
            "org_units[0]: unknown org unit 'legal'",
        ),
        (
            ["remove", "wiki-launch"],
            "activity 'wiki-launch' comes from the tool registry file; remove it there",
        ),
        (["remove", "nothing"], "no activity with id 'nothing'"),
    ],
)
def test_bad_commands_say_what_is_wrong(
    where: list[str], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv, *where)
    assert code == 1
    assert f"uptake-server: error: {message}" in err


@pytest.fixture
def running(where: list[str]) -> Iterator[Service]:
    data_dir, registry = where[1], where[3]
    service = Service(settings_for(Path(data_dir), registry_file=registry, kpi_enabled=False))
    service.start()
    yield service
    service.stop()


def test_while_a_server_holds_the_store_the_command_goes_through_it(
    running: Service, where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    via = [*where, "--grpc-listen", running.grpc_target]
    add = ["add", "--id", "wiki-webinar", "--tool", "wiki", "--kind", "webinar"]
    add += ["--title", "Tips", "--start", "2026-02-10T10:00Z", "--end", "2026-02-10T11:00Z"]
    code, out, err = run(capsys, *add, *via)
    assert (code, out.strip()) == (0, "wiki-webinar"), err
    code, out, _ = run(capsys, "list", "--format", "json", *via)
    rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert rows["wiki-webinar"]["source"] == "api"
    assert rows["wiki-launch"]["source"] == "registry"
    code, out, _ = run(capsys, "report", "--id", "wiki-webinar", "--format", "json", *via)
    (only,) = map(json.loads, out.splitlines())
    assert (only["activity"], only["status"]) == ("wiki-webinar", "no_comparison")
    code, _, err = run(capsys, "remove", "wiki-launch", *via)
    assert code == 1 and "refused: activity 'wiki-launch' comes from the tool registry" in err
    code, _, err = run(capsys, "list", *where, "--grpc-listen", "127.0.0.1:9")
    assert code == 1 and "no server answers at 127.0.0.1:9" in err
