"""Column batches for storage tests."""

from __future__ import annotations

import json
import os
import time

from uptake_server.model import EventColumns, FailedColumns

NOW_MS = int(time.time() * 1000)


def events_of(
    user: bytes,
    count: int,
    *,
    tool: str = "wiki",
    ids: list[bytes] | None = None,
    received_at: int = NOW_MS,
) -> EventColumns:
    """Return `count` events of one user (pseudonym), a minute apart, newest first."""
    cols = EventColumns()
    for i, event_id in enumerate(ids or [os.urandom(16) for _ in range(count)]):
        cols.event_id.append(event_id)
        cols.occurred_at.append(NOW_MS - 60_000 * i)
        cols.received_at.append(received_at)
        cols.tool.append(tool)
        cols.action.append("page_edit")
        cols.user_id.append(user)
        cols.org_unit.append("sales")
        cols.feature.append("editor" if i % 2 else "")
        cols.client.append("sdk-test")
        cols.property_keys.append(["k", "n"])
        cols.property_values.append(["v", str(i)])
    return cols


def failed_of(user: bytes, count: int, *, batch_id: str = "b1") -> FailedColumns:
    """Return `count` rejected events whose payload names a user's pseudonym."""
    cols = FailedColumns()
    for i in range(count):
        cols.received_at.append(NOW_MS)
        cols.batch_id.append(batch_id)
        cols.event_index.append(i)
        cols.field.append("tool")
        cols.code.append("invalid_slug")
        cols.reason.append("tool must be a lowercase slug")
        cols.client.append("sdk-test")
        cols.payload.append(json.dumps({"tool": "Wiki", "user_id": user.hex()}))
    return cols
