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
    # The embedded store rolls the KPI aggregates up itself (store/rollup.py).
    rollup: bool = False
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
        f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS event_ids_mv TO event_ids AS
{EVENT_IDS_SELECT.format(where="")}
""",
    ]


def _kpi_aggregates(ctx: SchemaContext) -> list[str]:
    # Aggregates the KPI refresher reads instead of raw events (docs/kpis.md).
    # Every aggregate is idempotent (distinct rows, min, max) except the event
    # count; re-inserting the same events changes no distinct-user figure.
    return [
        f"""
CREATE TABLE IF NOT EXISTS kpi_user_hours (
    tool LowCardinality(String),
    hour DateTime('UTC'),
    user_id FixedString(16),
    org_unit LowCardinality(String),
    action LowCardinality(String),
    feature LowCardinality(String),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tool, hour, user_id, org_unit, action, feature)
TTL hour + INTERVAL {ctx.retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
""",
        f"""
CREATE TABLE IF NOT EXISTS kpi_user_days (
    tool LowCardinality(String),
    day Date,
    user_id FixedString(16),
    org_unit LowCardinality(String),
    action LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tool, day, user_id, action, org_unit)
TTL day + INTERVAL {ctx.retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
""",
        # No TTL: "first event ever" must outlive the raw events.
        """
CREATE TABLE IF NOT EXISTS kpi_first_seen (
    tool LowCardinality(String),
    user_id FixedString(16),
    action LowCardinality(String),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY (tool, user_id, action)
""",
        """
CREATE TABLE IF NOT EXISTS kpi_backfill (
    month UInt32,
    cutoff DateTime64(3, 'UTC'),
    done_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(done_at)
ORDER BY month
""",
        *(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_mv TO {table} AS\n"
            + select.format(where="")
            for table, select in KPI_VIEWS
        ),
        # Month 0 records when the views began: events received before then are
        # backfilled from the events table (uptake_server.kpi.backfill).
        "INSERT INTO kpi_backfill (month, cutoff) SELECT 0, now64(3) "
        "WHERE (SELECT count() FROM kpi_backfill WHERE month = 0) = 0",
    ]


# The view bodies, shared with the backfill so both aggregate alike. {where} is
# empty in the views and a month filter in the backfill.
KPI_USER_HOURS_SELECT = """SELECT tool, toStartOfHour(occurred_at) AS hour, user_id, org_unit,
       action, feature, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
       toUInt64(count()) AS events
FROM events {where}
GROUP BY tool, hour, user_id, org_unit, action, feature"""
KPI_USER_DAYS_SELECT = """SELECT DISTINCT tool, toDate(occurred_at) AS day, user_id, org_unit,
       action
FROM events {where}"""
KPI_FIRST_SEEN_SELECT = """SELECT tool, user_id, action, min(occurred_at) AS first_at
FROM events {where}
GROUP BY tool, user_id, action"""
KPI_VIEWS: tuple[tuple[str, str], ...] = (
    ("kpi_user_hours", KPI_USER_HOURS_SELECT),
    ("kpi_user_days", KPI_USER_DAYS_SELECT),
    ("kpi_first_seen", KPI_FIRST_SEEN_SELECT),
)
# The duplicate filter's view body, shared with the embedded store's roll-up.
EVENT_IDS_SELECT = "SELECT event_id, received_at FROM events {where}"
# Every table derived from events, with the SELECT that derives it: views on a
# server, the roll-up in the embedded store (store/rollup.py).
DERIVED_TABLES: tuple[tuple[str, str], ...] = (("event_ids", EVENT_IDS_SELECT), *KPI_VIEWS)


# Adoption activities (uptake_server.activities): one row per write, the newest
# version of an id wins, a removal is a row with deleted = 1. No user_id: an
# activity holds no pseudonym.
ACTIVITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "String"),
    ("version", "UInt64"),
    ("deleted", "UInt8"),
    ("tool", "LowCardinality(String)"),
    ("kind", "LowCardinality(String)"),
    ("title", "String"),
    ("link", "String"),
    ("org_units", "Array(String)"),
    ("start_at", "DateTime64(3, 'UTC')"),
    ("end_at", "DateTime64(3, 'UTC')"),
    ("source", "LowCardinality(String)"),
    ("recorded_at", "DateTime64(3, 'UTC')"),
)


def _activities(ctx: SchemaContext) -> list[str]:
    return [
        f"""
CREATE TABLE IF NOT EXISTS activities (
    {_columns(ACTIVITY_COLUMNS)}
) ENGINE = ReplacingMergeTree(version)
ORDER BY id
"""
    ]


# The insert number of an event row, and the marks of the roll-up (store/rollup.py).
SEQ_COLUMN = "insert_seq"
ROLLUP_STATE_TABLE = "kpi_rollup"


def _writer_rollup(ctx: SchemaContext) -> list[str]:
    # Embedded store only: the views of migrations 1 and 2 go, the writer rolls
    # up instead (store/rollup.py).
    if not ctx.rollup:
        return []
    return [
        f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {SEQ_COLUMN} UInt64 DEFAULT 0",
        # Each insert's rows share one number, so a min-max index finds a slice
        # in the newest parts without reading the others.
        f"ALTER TABLE events ADD INDEX IF NOT EXISTS events_{SEQ_COLUMN} {SEQ_COLUMN} "
        "TYPE minmax GRANULARITY 1",
        f"""
CREATE TABLE IF NOT EXISTS {ROLLUP_STATE_TABLE} (
    aggregate LowCardinality(String),
    upto UInt64,
    done_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(done_at)
ORDER BY aggregate
""",
        *(f"DROP VIEW IF EXISTS {table}_mv" for table, _ in DERIVED_TABLES),
    ]


# Embedded store only: the memory of writing and merging parts. Each column stream
# of a part being written keeps compression buffers of max_compress_block_size (1 MiB
# by default; about 20 streams in `events`), and a horizontal merge reads every column
# of every part at once and writes every column at once: 56-76 MB for a merge of 6-7
# parts of `events`, however small. With 64 KiB blocks (ClickHouse's own minimum
# block size) the same merges take 25-34 MB.
SMALL_BLOCKS = "max_compress_block_size = 65536"


def _small_blocks(ctx: SchemaContext) -> list[str]:
    if not ctx.rollup:
        return []
    tables = ("events", *(table for table, _ in DERIVED_TABLES))
    return [f"ALTER TABLE {table} MODIFY SETTING {SMALL_BLOCKS}" for table in tables]


# Embedded store only: `events` merged column by column. A horizontal merge (what
# ClickHouse does for tables with fewer than 11 columns outside the sorting key)
# reads every column stream of every part at once: about 4 MB per part, 36-50 MB for
# a merge of 8-9 parts of any size, and on 2 cores up to four merges run at once. A
# vertical merge reads the sorting key's columns of all parts, then one other
# column at a time: 20 MB against 48-50 MB for nine parts of 300,000 rows, in the
# same time. Merges of fewer than 131,072 rows stay horizontal (ClickHouse's
# default threshold).
VERTICAL_MERGES = "vertical_merge_algorithm_min_columns_to_activate = 1"


def _vertical_merges(ctx: SchemaContext) -> list[str]:
    if not ctx.rollup:
        return []
    return [f"ALTER TABLE events MODIFY SETTING {VERTICAL_MERGES}"]


# Embedded store only: fewer, wider merges of the two tables every event is written
# to. ClickHouse's merge selector merges a range of parts once their total is about
# `merge_selector_base` (5) times the largest, so each event is rewritten once for
# each factor of 5 its part grows by. At 10 merges rewrite about 30% fewer rows, at
# the price of a few more parts kept between merges (13-22 active parts of `events`
# against 18-19 after 5 minutes at full load). Measured at full load over 300 s: rows
# merged per event 6.5-6.7 by default, 4.6 with both tables at 10 (docs/performance.md).
WIDE_MERGES = "merge_selector_base = 10"
WIDE_MERGE_TABLES = ("events", "event_ids")


def _wide_merges(ctx: SchemaContext) -> list[str]:
    if not ctx.rollup:
        return []
    return [f"ALTER TABLE {table} MODIFY SETTING {WIDE_MERGES}" for table in WIDE_MERGE_TABLES]


MIGRATIONS: list[Migration] = [
    Migration(1, "events, failed events and event ids", _events_and_failed),
    Migration(2, "KPI aggregates: user hours, user days, first seen", _kpi_aggregates),
    Migration(3, "adoption activities", _activities),
    Migration(4, "event ids and KPI aggregates rolled up by the writer (embedded)", _writer_rollup),
    Migration(5, "parts written and merged in small blocks (embedded)", _small_blocks),
    Migration(6, "events merged column by column (embedded)", _vertical_merges),
    Migration(7, "events and event ids merged about ten parts at a time (embedded)", _wide_merges),
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
