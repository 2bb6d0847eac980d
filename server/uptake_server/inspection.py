"""Show stored and failed events in a terminal; user ids appear only as pseudonyms."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from uptake_server.config import Settings
from uptake_server.errors import StoreLocked
from uptake_server.store import open_store

_EVENT_SQL = """
SELECT lower(hex(event_id)), occurred_at, tool, action, lower(hex(user_id)), org_unit,
       feature, client, property_keys, property_values
FROM events {where}
ORDER BY occurred_at DESC
LIMIT {{limit:UInt32}}
"""
_EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "tool",
    "action",
    "user_id",
    "org_unit",
    "feature",
    "client",
    "property_keys",
    "property_values",
)
_FAILED_SQL = """
SELECT received_at, batch_id, event_index, field, code, reason, client, payload
FROM failed_events {where}
ORDER BY received_at DESC
LIMIT {{limit:UInt32}}
"""
_FAILED_FIELDS: tuple[str, ...] = (
    "received_at",
    "batch_id",
    "event_index",
    "field",
    "code",
    "reason",
    "client",
    "payload",
)


def fetch_events(
    settings: Settings, *, failed: bool = False, tool: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Return the newest stored (or failed) events as dicts."""
    try:
        store = open_store(settings)
    except StoreLocked as exc:
        raise StoreLocked(
            f"{exc}. The embedded engine allows one process per data directory, so stop the "
            "server to inspect its events (with a ClickHouse server as the store, this works "
            "while the service runs)"
        ) from None
    try:
        params: dict[str, Any] = {"limit": limit}
        if failed:
            where = "WHERE JSONExtractString(payload, 'tool') = {tool:String}" if tool else ""
            sql, fields = _FAILED_SQL.format(where=where), _FAILED_FIELDS
        else:
            where = "WHERE tool = {tool:String}" if tool else ""
            sql, fields = _EVENT_SQL.format(where=where), _EVENT_FIELDS
        if tool:
            params["tool"] = tool
        rows = store.query(sql, params)
    finally:
        store.close()
    return [dict(zip(fields, row, strict=True)) for row in rows]


def show_events(settings: Settings, *, failed: bool, tool: str | None, limit: int, fmt: str) -> int:
    """Print the newest events as a table or JSON lines; return the exit status."""
    rows = fetch_events(settings, failed=failed, tool=tool, limit=limit)
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, default=_json_default, ensure_ascii=False))
        return 0
    table = Table(title="failed events" if failed else "events", show_lines=False)
    fields = _FAILED_FIELDS if failed else _EVENT_FIELDS
    for name in fields:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row[name]) for name in fields))
    Console().print(table)
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat()
    raise TypeError(type(value).__name__)
