"""The storage commands: migrate (with --print-sql) and purge --user, on every transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.storage.rows import events_of, failed_of
from uptake_server.cli import main
from uptake_server.config import load_settings
from uptake_server.ingest.pseudonym import Pseudonymiser, load_key
from uptake_server.store import open_store

pytestmark = pytest.mark.usefixtures("cli_logging")


def test_migrate_then_purge_one_user(
    store_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--store-dsn", store_dsn, "--dev", "--data-dir", str(tmp_path / "var")]
    assert main(["migrate", *flags]) == 0
    assert capsys.readouterr().out.startswith("applied: 1: events, failed events and event ids")
    assert main(["migrate", *flags, "--retention-days", "100"]) == 0
    assert "retention of events: 396 -> 100 days" in capsys.readouterr().out

    settings = load_settings(
        {"store_dsn": store_dsn, "dev": True, "data_dir": flags[4]}, environ={}
    )
    pseudonymise = Pseudonymiser(load_key(settings))
    alice, bob = pseudonymise("alice@example.org"), pseudonymise("bob@example.org")
    store = open_store(settings)
    try:
        store.insert(events_of(alice, 5), failed_of(alice, 2))
        store.insert(events_of(bob, 3), failed_of(bob, 1, batch_id="b2"))
    finally:
        store.close()

    assert main(["purge", "--user", "alice@example.org", *flags]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"purged pseudonym {alice.hex()}: ")
    lines = dict(line.split() for line in out.splitlines()[1:])
    assert (lines["events"], lines["failed_events"], lines["kpi_first_seen"]) == ("5", "2", "1")
    assert "alice@example.org" not in out
    store = open_store(settings)
    try:
        users = store.query("SELECT DISTINCT user_id FROM events")
        failed = store.query("SELECT count() FROM failed_events")
    finally:
        store.close()
    assert users == [(bob,)]
    assert failed == [(1,)]
    assert main(["purge", "--user", "alice@example.org", *flags]) == 0
    assert ": 0 rows in " in capsys.readouterr().out


def test_purge_needs_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["purge"])
    assert "--user" in capsys.readouterr().err
