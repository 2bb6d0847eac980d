"""The KPI refresher: one query per refresh, privacy applied, one immutable snapshot published.

The per-person snapshot is built once per refresh (a temporary table on the
embedded engine; a CTE in the same statement on a server) and every KPI query runs
in one statement on it, so all figures of a refresh come from the same instant and
the same data. The published `KpiSnapshot` is replaced
atomically; scrapes read it and never query the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from uptake_server.errors import ConfigError, StoreError
from uptake_server.kpi.definitions import Kpi, QueryContext
from uptake_server.kpi.privacy import REASONS, Protected, Row, Series, protect
from uptake_server.kpi.snapshot import SNAPSHOT, snapshot_sql
from uptake_server.registry import Registry

log = logging.getLogger(__name__)


class KpiStore(Protocol):
    """What the refresher needs of the store."""

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]: ...

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None: ...

    def supports_setting(self, name: str) -> bool: ...

    @property
    def temporary_tables(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiSnapshot:
    """The KPI series of one refresh, ready to export."""

    taken_at: float
    duration_seconds: float
    series: tuple[Series, ...]
    suppressed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyLimits:
    """Minimum group size and cardinality bounds."""

    min_group_size: int = 5
    max_org_units_per_tool: int = 200
    max_unregistered_tools: int = 50


def build_query(
    kpis: Sequence[Kpi], ctx: QueryContext, *, with_snapshot: bool = True
) -> tuple[str, dict[str, Any]]:
    """Return the one statement computing every KPI, and its parameters.

    With `with_snapshot`, the statement builds the snapshot itself (a CTE);
    without, it reads a table of that name built just before.
    """
    parameters: dict[str, Any] = dict(ctx.parameters())
    owners = dict.fromkeys(parameters, "the refresher")
    branches = []
    for index, kpi in enumerate(kpis):
        built = kpi.query(ctx)
        for name, value in built.parameters.items():
            if name in parameters and parameters[name] != value:
                raise ConfigError(
                    f"KPI {kpi.name!r} binds parameter {name!r}, already bound by {owners[name]}"
                )
            parameters[name] = value
            owners[name] = f"KPI {kpi.name!r}"
        branches.append(
            f"SELECT {index} AS kpi, toString(tool) AS tool, "
            "CAST(org_unit AS Nullable(String)) AS org_unit, "
            "CAST(labels AS Array(String)) AS labels, toFloat64(num) AS num, "
            f"toFloat64(den) AS den FROM ({built.sql}\n)"
        )
    sql = "\nUNION ALL\n".join(branches)
    if with_snapshot:
        sql = f"WITH {SNAPSHOT} AS MATERIALIZED ({snapshot_sql(ctx)})\n{sql}"
    return sql, parameters


class Refresher:
    """Compute KPI snapshots on demand or every `interval` seconds on a background thread."""

    def __init__(
        self,
        store: KpiStore,
        *,
        kpis: Sequence[Kpi],
        registry: Registry,
        limits: PrivacyLimits,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        on_snapshot: Callable[[KpiSnapshot], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._kpis = list(kpis)
        self._registry = registry
        self._limits = limits
        self._interval = interval
        self._clock = clock
        self._on_snapshot = on_snapshot
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._settings: dict[str, Any] | None = None
        self.snapshot: KpiSnapshot | None = None
        self.errors = 0
        self.last_error: str | None = None

    def refresh(self, *, now: dt.datetime | None = None) -> KpiSnapshot:
        """Compute and publish a snapshot at `now` (default: the clock); raise StoreError."""
        with self._lock:
            started = time.perf_counter()
            moment = now or dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            try:
                rows = self.rows(now=moment)
            except StoreError as exc:
                self._failed(str(exc))
                raise
            protected = protect(
                rows,
                kpis=self._kpis,
                k=self._limits.min_group_size,
                max_org_units=self._limits.max_org_units_per_tool,
                max_tools=self._limits.max_unregistered_tools,
                registered=self._registry.tools,
            )
            snapshot = _snapshot(moment, time.perf_counter() - started, protected)
            self.snapshot = snapshot
            if self._on_snapshot is not None:
                self._on_snapshot(snapshot)
            return snapshot

    def _failed(self, why: str) -> None:
        self.errors += 1
        self.last_error = why
        if self._on_error is not None:
            self._on_error()

    def rows(self, *, now: dt.datetime) -> list[Row]:
        """Return every KPI's rows at `now`, before privacy rules (for `refresh` and tests)."""
        ctx = QueryContext(now=now, registry=self._registry)
        store = self._store
        if store.temporary_tables:
            # Embedded engine: build the snapshot once into a temporary table, then
            # run every KPI on it in one statement.
            store.command(f"DROP TEMPORARY TABLE IF EXISTS {SNAPSHOT}")
            store.command(
                f"CREATE TEMPORARY TABLE {SNAPSHOT} ENGINE = Memory AS {snapshot_sql(ctx)}",
                ctx.parameters(),
            )
            try:
                sql, parameters = build_query(self._kpis, ctx, with_snapshot=False)
                result = store.query(sql, parameters)
            finally:
                store.command(f"DROP TEMPORARY TABLE IF EXISTS {SNAPSHOT}")
        else:
            # A server (maybe behind a load balancer, so no session state): one
            # statement with the snapshot as a CTE, materialized where supported.
            sql, parameters = build_query(self._kpis, ctx)
            if self._settings is None:
                flag = "enable_materialized_cte"
                self._settings = {flag: 1} if store.supports_setting(flag) else {}
            if not self._settings:
                sql = sql.replace(" AS MATERIALIZED (", " AS (", 1)
            result = store.query(sql, parameters, self._settings)
        names = [kpi.name for kpi in self._kpis]
        return [
            Row(names[index], tool, org_unit, tuple(labels), float(num), float(den))
            for index, tool, org_unit, labels, num, den in result
        ]

    def start(self) -> None:
        """Start refreshing in the background, the first time right away."""
        self._thread = threading.Thread(target=self._run, name="uptake-kpi-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                snapshot = self.refresh()
                log.debug(
                    "KPI refresh: %d series in %.3f s",
                    len(snapshot.series),
                    snapshot.duration_seconds,
                )
            except StoreError as exc:
                log.warning("KPI refresh failed (serving the previous snapshot): %s", exc)
            except Exception as exc:
                self._failed(repr(exc))
                log.exception("KPI refresh failed unexpectedly (serving the previous snapshot)")
            self._stop.wait(self._interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background loop, waiting for a refresh in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the KPI refresher did not stop within %.1f s", timeout)


def _snapshot(moment: dt.datetime, duration: float, protected: Protected) -> KpiSnapshot:
    return KpiSnapshot(
        taken_at=moment.timestamp(),
        duration_seconds=duration,
        series=tuple(protected.series),
        suppressed={reason: protected.suppressed.get(reason, 0) for reason in REASONS},
    )
