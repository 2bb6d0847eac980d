"""Right to erasure: remove one user's rows, found by pseudonym, from every table that holds them.

The tables are the schema's tables with a ``user_id`` column (raw events and the
per-user KPI aggregates), plus failed events, whose JSON payload carries the
pseudonym. Each is deleted with ``ALTER TABLE ... DELETE`` and ``mutations_sync = 2``:
a mutation that rewrites the affected parts, so the rows are physically gone (on
every replica) when the command returns, not merely hidden. The replaced parts are
removed from disk by the server shortly after (``old_parts_lifetime``).

``event_ids`` is kept on purpose: it holds only random event ids and receive times,
nothing about the user, and it makes a late SDK retry of a purged event count as a
duplicate instead of storing the event again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uptake_server.errors import StoreError
from uptake_server.store.cluster import has_user_column
from uptake_server.store.migrations import plan, render
from uptake_server.store.schema import SchemaContext

if TYPE_CHECKING:
    from uptake_server.store.clickhouse import ClickHouseStore

log = logging.getLogger(__name__)

PSEUDONYM_BYTES = 16
FAILED_EVENTS = "failed_events"


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed: rows per table, for one pseudonym."""

    pseudonym: str
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Return the rows removed from all tables."""
        return sum(self.removed.values())


def user_tables(ctx: SchemaContext) -> list[str]:
    """Return the tables with a user_id column, in schema order."""
    single = dataclasses.replace(ctx, cluster="")
    found = (has_user_column(s) for _, statements in plan(single) for s in statements)
    return list(dict.fromkeys(name for name in found if name))


def user_conditions(hex_id: str, ctx: SchemaContext) -> dict[str, str]:
    """Return, per table, the condition that selects one user's rows."""
    # Inlined, not bound: mutations take no query parameters on every server
    # version, and the value is our own hex digest.
    if len(hex_id) != 2 * PSEUDONYM_BYTES or hex_id.strip("0123456789abcdef"):
        raise StoreError(f"a pseudonym is {2 * PSEUDONYM_BYTES} lowercase hex digits")
    conditions = {t: f"user_id = toFixedString(unhex('{hex_id}'), 16)" for t in user_tables(ctx)}
    conditions[FAILED_EVENTS] = f"JSONExtractString(payload, 'user_id') = '{hex_id}'"
    return conditions


def delete_statement(table: str, condition: str) -> str:
    """Return the statement that deletes the matching rows (single-node form)."""
    return f"ALTER TABLE {table} DELETE WHERE {condition}"


def purge_user(store: ClickHouseStore, pseudonym: bytes, ctx: SchemaContext) -> PurgeReport:
    """Delete every row of one pseudonymised user and return what was removed."""
    if len(pseudonym) != PSEUDONYM_BYTES:
        raise StoreError(f"a pseudonym has {PSEUDONYM_BYTES} bytes, got {len(pseudonym)}")
    hex_id = pseudonym.hex()
    conditions = user_conditions(hex_id, ctx)
    report = PurgeReport(hex_id)
    # Events not yet in the aggregates go in now, so the deletes below find them.
    store.roll_up()
    for table, condition in conditions.items():
        count = _count(store, table, condition)
        if count:
            for statement in render([delete_statement(table, condition)], ctx):
                store.command(statement, settings={"mutations_sync": 2})
            left = _count(store, table, condition)
            if left:
                raise StoreError(f"{left} rows of the user remain in {table} after the delete")
        report.removed[table] = count
        log.info("purged %d rows of pseudonym %s from %s", count, hex_id, table)
    return report


def _count(store: ClickHouseStore, table: str, condition: str) -> int:
    return int(store.query(f"SELECT count() FROM {table} WHERE {condition}")[0][0])
