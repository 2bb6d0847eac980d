"""Column batches: the shape in which events travel from validation to the store.

Columns rather than one object per event: the hot path appends to lists and the
store inserts them column-oriented, with no per-event Python objects between.
"""

from __future__ import annotations

import dataclasses as dc

# Column names and ClickHouse types of the `events` table, in insert order.
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "FixedString(16)"),
    ("occurred_at", "DateTime64(3, 'UTC')"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("tool", "LowCardinality(String)"),
    ("action", "LowCardinality(String)"),
    ("user_id", "FixedString(16)"),
    ("org_unit", "LowCardinality(String)"),
    ("feature", "LowCardinality(String)"),
    ("client", "LowCardinality(String)"),
    ("property_keys", "Array(LowCardinality(String))"),
    ("property_values", "Array(String)"),
)

FAILED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("received_at", "DateTime64(3, 'UTC')"),
    ("batch_id", "String"),
    ("event_index", "UInt32"),
    ("field", "LowCardinality(String)"),
    ("code", "LowCardinality(String)"),
    ("reason", "String"),
    ("client", "LowCardinality(String)"),
    ("payload", "String"),
)


@dc.dataclass(slots=True)
class EventColumns:
    """Accepted events, one list per column; timestamps are integer milliseconds (UTC)."""

    event_id: list[bytes] = dc.field(default_factory=list)
    occurred_at: list[int] = dc.field(default_factory=list)
    received_at: list[int] = dc.field(default_factory=list)
    tool: list[str] = dc.field(default_factory=list)
    action: list[str] = dc.field(default_factory=list)
    user_id: list[bytes] = dc.field(default_factory=list)
    org_unit: list[str] = dc.field(default_factory=list)
    feature: list[str] = dc.field(default_factory=list)
    client: list[str] = dc.field(default_factory=list)
    property_keys: list[list[str]] = dc.field(default_factory=list)
    property_values: list[list[str]] = dc.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_id)

    def columns(self) -> list[list[object]]:
        """Return the column lists in EVENT_COLUMNS order."""
        return [getattr(self, name) for name, _ in EVENT_COLUMNS]

    def extend(self, other: EventColumns) -> None:
        """Append every row of another batch."""
        for name, _ in EVENT_COLUMNS:
            getattr(self, name).extend(getattr(other, name))

    def select(self, keep: list[int]) -> EventColumns:
        """Return a new batch with only the rows at the given positions."""
        out = EventColumns()
        for name, _ in EVENT_COLUMNS:
            column = getattr(self, name)
            getattr(out, name).extend(column[i] for i in keep)
        return out


@dc.dataclass(slots=True)
class FailedColumns:
    """Rejected events with their reasons; the payload holds no raw user id."""

    received_at: list[int] = dc.field(default_factory=list)
    batch_id: list[str] = dc.field(default_factory=list)
    event_index: list[int] = dc.field(default_factory=list)
    field: list[str] = dc.field(default_factory=list)
    code: list[str] = dc.field(default_factory=list)
    reason: list[str] = dc.field(default_factory=list)
    client: list[str] = dc.field(default_factory=list)
    payload: list[str] = dc.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.received_at)

    def columns(self) -> list[list[object]]:
        """Return the column lists in FAILED_COLUMNS order."""
        return [getattr(self, name) for name, _ in FAILED_COLUMNS]

    def extend(self, other: FailedColumns) -> None:
        """Append every row of another batch."""
        for name, _ in FAILED_COLUMNS:
            getattr(self, name).extend(getattr(other, name))
