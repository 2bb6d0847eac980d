"""What a stored event must look like, written independently of the server's validation."""

from __future__ import annotations

import re
from typing import Any

from uptake_server.app import Service

SLUG = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SKEW_MS = 300_000
RETENTION_MS = 396 * 86_400_000
# Defined rejections of a whole request; anything else (INTERNAL, UNKNOWN) is a bug.
DEFINED = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}

_COLUMNS = (
    "hex(event_id), toUnixTimestamp64Milli(occurred_at), toUnixTimestamp64Milli(received_at), "
    "tool, action, length(user_id), org_unit, feature, client, property_keys, property_values"
)


def problems(row: tuple[Any, ...]) -> list[str]:
    """Return what is wrong with one stored event row (empty when it is valid)."""
    _, occurred, received, tool, action, user_bytes, org, feature, client, keys, values = row
    found = []
    if not SLUG.fullmatch(tool) or not SLUG.fullmatch(action):
        found.append("tool or action is not a slug")
    if feature and not SLUG.fullmatch(feature):
        found.append("feature is not a slug")
    if user_bytes != 16:
        found.append("user_id is not a 16-byte pseudonym")
    if len(org) > 128 or len(client) > 64 or CONTROL.search(org + client):
        found.append("org_unit or client too long or with control characters")
    if not received - RETENTION_MS <= occurred <= received + SKEW_MS:
        found.append("occurred_at outside the accepted window")
    if len(keys) != len(values) or len(keys) > 32 or len(set(keys)) != len(keys):
        found.append("properties mismatched, too many or repeated")
    if any(not SLUG.fullmatch(k) for k in keys):
        found.append("a property key is not a slug")
    if any(len(v) > 256 or CONTROL.search(v) for v in values):
        found.append("a property value is too long or has control characters")
    if sum(len(k.encode()) + len(v.encode()) for k, v in zip(keys, values, strict=False)) > 4096:
        found.append("properties too large")
    return found


def stored_rows(service: Service, ids: set[bytes]) -> list[tuple[Any, ...]]:
    """Return the stored rows of these event ids (one per stored copy)."""
    rows: list[tuple[Any, ...]] = []
    listed = sorted(i for i in ids if len(i) == 16)  # no other id fits the column
    for start in range(0, len(listed), 500):
        chunk = ",".join(f"unhex('{i.hex()}')" for i in listed[start : start + 500])
        rows += service.store.query(f"SELECT {_COLUMNS} FROM events WHERE event_id IN ({chunk})")
    return rows


def check_store(service: Service, *, sent: set[bytes], acknowledged: set[bytes]) -> None:
    """Assert: every acknowledged id is stored once, nothing else was stored, all of it valid."""
    rows = stored_rows(service, sent)
    stored = [bytes.fromhex(row[0]) for row in rows]
    assert len(stored) == len(set(stored)), "an event is stored twice"
    assert set(stored) == acknowledged, "stored events differ from the acknowledged ones"
    bad = [(row[0], p) for row in rows if (p := problems(row))]
    assert not bad, f"invalid events were stored: {bad[:5]}"
