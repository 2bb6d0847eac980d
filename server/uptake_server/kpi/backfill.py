"""Backfill the KPI aggregates from events stored before their materialized views existed.

The views only see inserts made after they were created. Migration 2 records that
moment (`kpi_backfill`, month 0); this module replays older events month by month,
recording each finished month, so an interrupted backfill resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from uptake_server.store.schema import KPI_VIEWS

log = logging.getLogger(__name__)

Progress = Callable[[int, int, int, int], None]
"""Called with (month, months done, months in all, events in that month)."""


class Queryable(Protocol):
    """The store calls the backfill needs."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Any]: ...

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None: ...


def pending_months(store: Queryable) -> list[tuple[int, int]]:
    """Return (month, events) of every month with events still to backfill, oldest first."""
    rows = store.query("SELECT cutoff FROM kpi_backfill FINAL WHERE month = 0")
    if not rows:
        return []
    done = {r[0] for r in store.query("SELECT month FROM kpi_backfill FINAL WHERE month != 0")}
    months = store.query(
        "SELECT toYYYYMM(occurred_at) AS m, count() FROM events "
        "WHERE received_at < (SELECT max(cutoff) FROM kpi_backfill WHERE month = 0) "
        "GROUP BY m ORDER BY m"
    )
    return [(int(m), int(n)) for m, n in months if int(m) not in done]


def backfill(store: Queryable, *, progress: Progress | None = None) -> int:
    """Replay the events of every pending month into the aggregates; return events replayed."""
    months = pending_months(store)
    if not months:
        return 0
    total = sum(n for _, n in months)
    log.info("backfilling KPI aggregates: %d months, %d events", len(months), total)
    replayed = 0
    for index, (month, events) in enumerate(months, start=1):
        started = time.perf_counter()
        where = (
            "WHERE toYYYYMM(occurred_at) = {month:UInt32} AND received_at < "
            "(SELECT max(cutoff) FROM kpi_backfill WHERE month = 0)"
        )
        for table, select in KPI_VIEWS:
            store.command(
                f"INSERT INTO {table} {select.format(where=where)}", parameters={"month": month}
            )
        store.command(
            "INSERT INTO kpi_backfill (month, cutoff) "
            "SELECT {month:UInt32}, max(cutoff) FROM kpi_backfill WHERE month = 0",
            parameters={"month": month},
        )
        replayed += events
        log.info(
            "backfilled KPI aggregates for %d-%02d: %d events (%d/%d months, %.1f s)",
            month // 100,
            month % 100,
            events,
            index,
            len(months),
            time.perf_counter() - started,
        )
        if progress is not None:
            progress(month, index, len(months), events)
    return replayed


def backfill_with_progress(store: object) -> int:
    """Backfill with a progress bar on the terminal (the `migrate` command)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from uptake_server.kpi.reader import KpiReader
    from uptake_server.store import ClickHouseStore

    if not isinstance(store, ClickHouseStore):
        return 0
    reader = KpiReader(store)
    months = pending_months(reader)
    if not months:
        return 0
    with Progress(
        TextColumn("backfilling KPI aggregates"), BarColumn(), MofNCompleteColumn()
    ) as bar:
        task = bar.add_task("months", total=len(months))
        return backfill(reader, progress=lambda *_: bar.advance(task))
