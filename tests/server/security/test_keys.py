"""API keys: format, hashing, constant-time checks, the keys file, reloads and the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tests.server.security.conftest import call_ingest
from tests.server.test_service import event, settings_for
from uptake.v1 import ingest_pb2
from uptake_server.app import Service
from uptake_server.cli import main
from uptake_server.errors import ConfigError
from uptake_server.security.keyfile import RELOAD_CHECK_SECONDS, KeyFile
from uptake_server.security.keys import parse_keys


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_file_keeps_only_a_hash_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, entry = KeyFile(path, setting="S").create(name="wiki prod", tools=["wiki", "docs"])
    secret = key.split("_", 2)[2]
    text = path.read_text()
    assert secret not in text and key not in text
    assert entry.sha256 in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = KeyFile(path, setting="S").load()
    assert keys.verify(key) == entry
    assert entry.may_write("docs") and not entry.may_write("chat")


def test_only_the_exact_live_key_verifies(tmp_path: Path) -> None:
    file = KeyFile(tmp_path / "keys.yaml", setting="S")
    key, entry = file.create(name="a", tools=["wiki"])
    other, gone = file.create(name="b", tools=["wiki"])
    file.revoke(gone.id)
    keys = file.load()
    secret = key.split("_", 2)[2]
    wrong = [
        "",
        key + "x",
        key[:-1],
        key.upper(),
        f"uptake_{'0' * 12}_{secret}",  # unknown id, well formed
        other,  # revoked
        f"uptake_{entry.id}_{other.rsplit('_', 1)[1]}",  # another key's secret
    ]
    assert keys.verify(key) == entry
    assert [keys.verify(w) for w in wrong] == [None] * len(wrong)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("keys: [", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping with a 'keys' list"),
        ("keys:\n- 3\n", "keys[0] must be a mapping"),
        ("keys:\n- {id: 'xyz', tools: [wiki], sha256: '" + "a" * 64 + "'}\n", "id is missing"),
        ("keys:\n- {id: 'abcdefabcdef', tools: [wiki], sha256: 'f00'}\n", "sha256 is missing"),
        ("keys:\n- {id: 'abcdefabcdef', tools: [], sha256: '" + "a" * 64 + "'}\n", "at least one"),
        ("keys:\n- {id: 'abcdefabcdef', tools: [Wiki], sha256: '" + "a" * 64 + "'}\n", "'Wiki'"),
        (
            "keys:\n- {id: 'abcdefabcdef', tools: [w], sha256: '" + "a" * 64 + "', "
            "events_per_second: -1}\n",
            "events_per_second must be a number greater than 0",
        ),
        (
            "keys:\n" + ("- {id: 'abcdefabcdef', tools: [w], sha256: '" + "a" * 64 + "'}\n") * 2,
            "the id abcdefabcdef appears twice",
        ),
    ],
)
def test_a_broken_keys_file_is_named_with_the_entry(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_keys(text, source="/etc/uptake/keys.yaml")
    assert "/etc/uptake/keys.yaml" in str(info.value)
    assert problem in str(info.value)


def test_changes_are_picked_up_and_a_broken_edit_keeps_the_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    editor = KeyFile(path, setting="S")
    key, entry = editor.create(name="a", tools=["wiki"])
    clock = Clock()
    served = KeyFile(path, setting="S", clock=clock)
    served.load()
    editor.revoke(entry.id)
    assert served.current().verify(key) == entry  # not checked again yet
    clock.now += RELOAD_CHECK_SECONDS
    assert served.current().verify(key) is None
    second, _ = editor.create(name="b", tools=["chat"])
    clock.now += RELOAD_CHECK_SECONDS
    assert served.current().verify(second) is not None
    path.write_text(path.read_text() + "\n  broken: [\n")
    clock.now += RELOAD_CHECK_SECONDS
    assert len(served.current()) == 2  # the last good file
    assert served.current().verify(second) is not None


def test_the_keys_command_creates_lists_and_revokes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "keys.yaml")
    create = ["create", "--name", "wiki-prod", "--tool", "wiki", "--tool", "docs"]
    assert main(["keys", "--api-keys-file", path, *create, "--events-per-second", "500"]) == 0
    created = capsys.readouterr()
    key = created.out.strip()
    assert key.startswith("uptake_") and "shown only this once" in created.err
    assert main(["keys", "--api-keys-file", path, "list", "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "wiki-prod" and listed["tools"] == ["docs", "wiki"]
    assert listed["events_per_second"] == 500 and listed["revoked_at"] is None
    assert "sha256" not in listed
    assert main(["keys", "--api-keys-file", path, "revoke", listed["id"]]) == 0
    capsys.readouterr()
    assert main(["keys", "--api-keys-file", path, "list"]) == 0
    table = capsys.readouterr().out
    assert "wiki-prod" in table and key not in table
    assert listed["id"] in table and "-\n" not in table  # the REVOKED column is filled


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["create", "--name", "x", "--tool", "Wiki"], "tool 'Wiki' is not a lowercase slug"),
        (["revoke", "abcdefabcdef"], "no key with id 'abcdefabcdef'"),
        (["list"], "does not exist"),
    ],
)
def test_the_keys_command_explains_what_is_wrong(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "--api-keys-file", str(tmp_path / "keys.yaml"), *arguments]) == 1
    assert message in capsys.readouterr().err


def test_a_revoked_key_stops_working_while_the_server_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.yaml"
    assert (
        main(["keys", "--api-keys-file", str(path), "create", "--name", "t", "--tool", "wiki"]) == 0
    )
    key = capsys.readouterr().out.strip()
    service = Service(settings_for(tmp_path / "var", api_keys_file=str(path)))
    service.start()
    try:
        with grpc.insecure_channel(service.grpc_target) as channel:
            request = ingest_pb2.IngestRequest(events=[event()])
            assert call_ingest(channel, request, key=key).code == grpc.StatusCode.OK
            key_id = key.split("_")[1]
            assert main(["keys", "--api-keys-file", str(path), "revoke", key_id]) == 0
            deadline = time.monotonic() + 10
            code = grpc.StatusCode.OK
            while code == grpc.StatusCode.OK and time.monotonic() < deadline:
                time.sleep(0.2)
                code = call_ingest(
                    channel, ingest_pb2.IngestRequest(events=[event()]), key=key
                ).code
            assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        service.stop()


def test_an_empty_keys_file_starts_and_lets_no_one_in(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("keys: []\n")
    service = Service(
        settings_for(
            tmp_path / "var", dev=False, pseudonym_key=os.urandom(16).hex(), api_keys_file=str(path)
        )
    )
    service.start()
    try:
        with grpc.insecure_channel(service.grpc_target) as channel:
            answer = call_ingest(
                channel, ingest_pb2.IngestRequest(events=[event()]), key="uptake_x_y"
            )
        assert answer.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        service.stop()


def test_serve_without_keys_outside_dev_mode_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTAKE_")}
    env["UPTAKE_PSEUDONYM_KEY"] = "k" * 32
    result = subprocess.run(
        [sys.executable, "-m", "uptake_server", "serve", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no API keys: set UPTAKE_API_KEYS_FILE" in result.stderr
    assert "Traceback" not in result.stderr
