"""Table policies converged at every start: retention TTLs and the insert deduplication window.

Unlike migrations, these follow the settings. Change UPTAKE_RETENTION_DAYS (or the
failed-event or aggregate retention) and the next start alters the TTL of the
existing table (ALTER TABLE ... MODIFY TTL). ClickHouse then re-evaluates the TTL of
the existing parts in the background, so a shortened retention drops the parts that
fall out of it. Every replica must run with the same values, or they take turns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from uptake_server.store.cluster import LOCAL_SUFFIX
from uptake_server.store.schema import RETENTION, Retention, SchemaContext

if TYPE_CHECKING:
    from uptake_server.store.clickhouse import ClickHouseStore

log = logging.getLogger(__name__)

# Blocks remembered per table for insert_deduplication_token on a single node
# (replicated tables remember their own, replicated_deduplication_window). A block
# is one group-commit insert; the window only has to outlive the store's retries.
DEDUP_WINDOW_BLOCKS = 1000
DEDUPLICATED_TABLES = ("events", "failed_events")

_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)", re.S)
_WINDOW = re.compile(r"\bnon_replicated_deduplication_window = (\d+)")


def retention_statement(policy: Retention, days: int) -> str:
    """Return the statement that sets a table's retention (single-node form)."""
    return f"ALTER TABLE {policy.table} MODIFY TTL {policy.expression(days)}"


def converge(
    store: ClickHouseStore, ctx: SchemaContext, *, render: Callable[[list[str]], list[str]]
) -> list[str]:
    """Bring retention TTLs and deduplication windows to the settings; return what changed."""
    suffix = LOCAL_SUFFIX if ctx.cluster else ""
    tables: dict[str, str] = dict(
        store.query(
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
        )
    )
    changes = []
    for policy in RETENTION:
        engine = tables.get(policy.table + suffix)
        if engine is None:
            continue
        want = policy.days(ctx)
        found = _TTL_DAYS.search(engine)
        have = int(found[1]) if found else None
        if have == want:
            continue
        for statement in render(
            [f"ALTER TABLE {policy.table} MODIFY TTL {policy.expression(want)}"]
        ):
            store.command(statement)
        changes.append(f"retention of {policy.table}: {have or 'none'} -> {want} days")
        log.info("%s", changes[-1])
    if ctx.cluster:
        return changes
    for table in DEDUPLICATED_TABLES:
        engine = tables.get(table)
        found = _WINDOW.search(engine or "")
        if engine is None or (found and int(found[1]) == DEDUP_WINDOW_BLOCKS):
            continue
        store.command(
            f"ALTER TABLE {table} MODIFY SETTING "
            f"non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}"
        )
        changes.append(f"deduplication window of {table}: {DEDUP_WINDOW_BLOCKS} inserts")
        log.info("%s", changes[-1])
    return changes
