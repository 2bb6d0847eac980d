"""End to end: SDK -> gRPC -> server -> embedded store, read back field by field."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uptake
from tests.support.servers import ServerProcess, stored_events


def pseudonym(key: bytes, user_id: str) -> str:
    return hmac.new(key, user_id.encode(), hashlib.sha256).digest()[:16].hex()


def test_tracked_events_are_stored_field_by_field(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    when = datetime.now(UTC).replace(microsecond=123_000) - timedelta(hours=3)
    with ServerProcess(data_dir) as server:
        client = uptake.Client(server.target, flush_interval=0.05)
        client.track(
            "jane.doe@example.com",
            "page_edit",
            tool="wiki",
            org_unit="Vertrieb Süd",
            feature="editor",
            properties={"space": "handbook", "lang": "de"},
            timestamp=when,
        )
        client.track("john", "message_post", tool="chat")
        assert client.flush(30) is True
        assert client.close(10) is True
        assert client.stats().delivered == 2
    key = (data_dir / "pseudonym.key").read_bytes().strip()
    events = sorted(stored_events(data_dir), key=lambda e: e["tool"])
    assert len(events) == 2
    chat, wiki = events
    assert wiki["tool"] == "wiki"
    assert wiki["action"] == "page_edit"
    assert wiki["org_unit"] == "Vertrieb Süd"
    assert wiki["feature"] == "editor"
    assert dict(zip(wiki["property_keys"], wiki["property_values"], strict=True)) == {
        "space": "handbook",
        "lang": "de",
    }
    assert wiki["occurred_at_ms"] == int(when.timestamp() * 1000)
    assert wiki["user_id"] == pseudonym(key, "jane.doe@example.com")
    assert wiki["client"] == f"uptake-python/{uptake.__version__}"
    assert uuid.UUID(hex=wiki["event_id"]).version == 7
    assert chat["user_id"] == pseudonym(key, "john")
    assert (chat["tool"], chat["action"], chat["org_unit"], chat["feature"]) == (
        "chat",
        "message_post",
        "",
        "",
    )
    # The raw ids were never written: not in any stored row, file or log line.
    for row in stored_events(data_dir) + stored_events(data_dir, failed=True):
        assert "jane.doe" not in repr(row)
    for path in (data_dir / "store").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"jane.doe@example.com" not in content, path
    assert "jane.doe" not in server.output()
