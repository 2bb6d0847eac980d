"""The store schema: versioned, idempotent migrations; the same SQL on chDB and a server.

Each migration is a list of statements that can run again safely (IF NOT EXISTS),
so a start that died half-way, or two replicas starting at once, converge. Applied
versions are recorded in `schema_migrations`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from uptake_server.model import EVENT_COLUMNS, FAILED_COLUMNS

# How long event ids are remembered to drop retried duplicates. Longer than
# any SDK retry (10 minutes) and than a plausible offline spool replay.
DEDUP_WINDOW_DAYS = 35


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaContext:
    """Values that shape the DDL."""

    retention_days: int = 396
    failed_retention_days: int = 30
    aggregate_retention_days: int = 1096
    cluster: str = ""  # non-empty: rendered for a cluster (store/cluster.py)
    database: str = "default"


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its number, a name, and the statements that make it."""

    version: int
    name: str
    statements: Callable[[SchemaContext], list[str]]


MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY version
"""


def _columns(columns: tuple[tuple[str, str], ...]) -> str:
    return ",\n    ".join(f"{name} {kind}" for name, kind in columns)


def _events_and_failed(ctx: SchemaContext) -> list[str]:
    return [
        f"""
CREATE TABLE IF NOT EXISTS events (
    {_columns(EVENT_COLUMNS)}
) ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tool, org_unit, toDate(occurred_at), user_id)
TTL toDateTime(occurred_at) + INTERVAL {ctx.retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
""",
        f"""
CREATE TABLE IF NOT EXISTS failed_events (
    {_columns(FAILED_COLUMNS)}
) ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (code, received_at)
TTL toDateTime(received_at) + INTERVAL {ctx.failed_retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
""",
        # Event ids seen recently, kept by a view on every insert into events,
        # so the pre-insert duplicate filter is a primary-key lookup.
        f"""
CREATE TABLE IF NOT EXISTS event_ids (
    event_id FixedString(16),
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY event_id
TTL toDateTime(received_at) + INTERVAL {DEDUP_WINDOW_DAYS} DAY
""",
        """
CREATE MATERIALIZED VIEW IF NOT EXISTS event_ids_mv TO event_ids AS
SELECT event_id, received_at FROM events
""",
    ]


MIGRATIONS: list[Migration] = [
    Migration(1, "events, failed events and event ids", _events_and_failed),
]


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a table keeps rows: its TTL with {days}, and the SchemaContext field of the days.

    Start-up converges each table to the configured days (store/policies.py), so a
    changed setting alters existing tables too.
    """

    table: str
    ttl: str
    setting: str

    def days(self, ctx: SchemaContext) -> int:
        """Return the configured days for this table."""
        return int(getattr(ctx, self.setting))

    def expression(self, days: int) -> str:
        """Return the TTL expression for a number of days."""
        return self.ttl.format(days=days)


RETENTION: tuple[Retention, ...] = (
    Retention("events", "toDateTime(occurred_at) + INTERVAL {days} DAY", "retention_days"),
    Retention(
        "failed_events", "toDateTime(received_at) + INTERVAL {days} DAY", "failed_retention_days"
    ),
    Retention("kpi_user_hours", "hour + INTERVAL {days} DAY", "aggregate_retention_days"),
    Retention("kpi_user_days", "day + INTERVAL {days} DAY", "aggregate_retention_days"),
)
