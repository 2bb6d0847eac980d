"""Aggregates of the embedded store, rolled up from `events` off the acknowledgement path.

On a ClickHouse server, materialized views on `events` feed the duplicate filter
(`event_ids`, migration 1) and the KPI aggregates (migration 2). Each view costs
every insert a part of its own, a few milliseconds whatever the insert's size: on
the embedded engine most of an acknowledgement's latency and of the CPU per event.
The embedded store (one process per data directory, so one process writing) drops the views
(migration 4) and rolls up instead:

- every insert into `events` carries the next number of a per-store sequence
  (`insert_seq`), taken when the insert starts; inserts on several writer
  connections overlap, so they can finish out of order, and a number counts as
  done once its insert has returned or failed;
- a roll-up (every `UPTAKE_ROLLUP_INTERVAL_MS`, before each KPI read, and when the
  store closes) runs the views' own SELECTs over the slice of events numbered after
  each table's mark, up to the newest number below which every insert is done (an
  insert still running holds the roll-up back, so none of its rows can land in a
  slice already rolled up), then records the new marks in `kpi_rollup`, all of them
  in one insert (one part, not one per table);
- the duplicate lookup reads `event_ids` and the slice of `events` after the
  filter's mark, so a retry is caught the moment its first send is acknowledged;
- the first roll-up of a process (`recover`) finishes whatever the previous one
  committed and did not roll up, clean shutdown or not.

Events stored before migration 4 carry number 0 and were handled by the views (or
the backfill). A process killed between the tables' inserts and the marks repeats
that slice: `event_ids`, `kpi_user_days` and `kpi_first_seen` are idempotent
(distinct rows, minima) and are rolled up first; `kpi_user_hours`, rolled up last,
then counts those events twice in its event count (only if it was killed after that
table's insert), while every distinct-user figure stays exact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from uptake_server.store.schema import DERIVED_TABLES, ROLLUP_STATE_TABLE, SEQ_COLUMN

log = logging.getLogger(__name__)

ROLE = "rollup"
DUPLICATE_FILTER = "event_ids"
# Tables a repeated slice leaves as they were (distinct rows, minima).
IDEMPOTENT = frozenset({DUPLICATE_FILTER, "kpi_user_days", "kpi_first_seen"})
# Every table the roll-up feeds, with the SELECT over a slice of events ({where}):
# the idempotent ones first, so a process killed before the marks are written can
# have counted a slice twice only in the last table.
TABLES = tuple(sorted(DERIVED_TABLES, key=lambda table: table[0] not in IDEMPOTENT))

Command = Callable[[str], None]
Query = Callable[[str], list[tuple[Any, ...]]]


def slice_condition(after: int, upto: int | None = None) -> str:
    """Return the condition selecting the events numbered after `after` (up to `upto`)."""
    condition = f"{SEQ_COLUMN} > {int(after)}"
    return condition if upto is None else f"{condition} AND {SEQ_COLUMN} <= {int(upto)}"


class Rollup:
    """The insert sequence of one store and the marks of the tables it rolls up."""

    def __init__(self, command: Command, query: Query) -> None:
        self._command = command
        self._query = query
        self._lock = threading.Lock()  # one roll-up at a time
        self._loaded = False
        self._seq = 0  # every insert numbered up to here is done
        self._issued = 0  # the newest number handed to an insert
        self._done: dict[int, int] = {}  # done above _seq: number -> events committed
        self._marks: dict[str, int] = {}
        self._pending = 0  # events committed up to _seq and not rolled up yet
        self._counts = threading.Lock()  # guards the numbers and _pending

    @property
    def pending(self) -> int:
        """Return how many committed events wait for a roll-up."""
        return self._pending

    def mark(self, table: str) -> int:
        """Return the number up to which a table is rolled up."""
        return self._marks.get(table, 0)

    def load(self) -> None:
        """Read the newest number, the marks and the backlog; call before any insert starts."""
        if self._loaded:
            return
        rows = self._query(f"SELECT max({SEQ_COLUMN}) FROM events")
        self._seq = self._issued = int(rows[0][0] or 0) if rows else 0
        marks = self._query(f"SELECT aggregate, upto FROM {ROLLUP_STATE_TABLE} FINAL")
        self._marks = {str(name): int(upto) for name, upto in marks}
        oldest = min(self.mark(table) for table, _ in TABLES)
        if oldest < self._seq:
            count = self._query(f"SELECT count() FROM events WHERE {slice_condition(oldest)}")
            self._pending = int(count[0][0]) if count else 0
        self._loaded = True

    def begin(self) -> int:
        """Return the number of an insert about to start; `finish` it whatever happens."""
        with self._counts:
            self._issued += 1
            return self._issued

    def finish(self, seq: int, events: int) -> None:
        """Record that the insert numbered `seq` is done, having committed `events` events.

        A failed insert finishes with 0: it stored nothing, and the numbers after it
        must not wait for it.
        """
        with self._counts:
            self._done[seq] = events
            while self._seq + 1 in self._done:
                self._seq += 1
                self._pending += self._done.pop(self._seq)

    def run(self) -> int:
        """Roll every table up to the newest committed insert; return events rolled up."""
        with self._lock:
            with self._counts:
                upto, pending = self._seq, self._pending
            started = time.perf_counter()
            done = []
            for table, select in TABLES:
                mark = self.mark(table)
                if mark >= upto:
                    continue
                where = f"WHERE {slice_condition(mark, upto)}"
                self._command(f"INSERT INTO {table} {select.format(where=where)}")
                # In memory at once: the duplicate lookup reads the filter up to here.
                self._marks[table] = upto
                done.append(table)
            if not done:
                return 0
            marks = ", ".join(f"('{table}', {upto})" for table in done)
            self._command(f"INSERT INTO {ROLLUP_STATE_TABLE} (aggregate, upto) VALUES {marks}")
            with self._counts:
                self._pending -= pending
            log.debug("rolled up %d events in %.3f s", pending, time.perf_counter() - started)
            return pending
