"""The KPI plugin interface: what a KPI declares and the context its query is built in.

Every KPI, the built-in ones included, is a `Kpi`: a name, help text, labels, a
query on the aggregates and whether it counts people. A query returns rows of
exactly these columns, in this order:

    tool       String               the tool
    org_unit   Nullable(String)     NULL for the per-tool series, else the org unit
    labels     Array(String)        values of the KPI's extra labels, in order
    num        Float64              the value, or the numerator of a ratio
    den        Float64              1 for plain values, the denominator of a ratio

A KPI that counts people falls under the minimum group size: its counts (num, and
den of a ratio when `denominator_counts_people`) are withheld when between 1 and
k - 1. Per-org-unit rows must count each person once per tool (the `user_snapshot`
attributes every person to the org unit of their latest event), so they add up
to the per-tool row and can be folded into `org_unit="(other)"`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from uptake_server.registry import WINDOWS, Registry

DEFINITION_VERSION = "1"
"""Version of the definitions in docs/kpis.md; exported in uptake_kpi_definitions_info."""

OTHER = "(other)"
UNKNOWN = "(unknown)"
ROW_COLUMNS = ("tool", "org_unit", "labels", "num", "den")


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiQuery:
    """SQL returning the row columns, and the parameters it binds ({name:Type})."""

    sql: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Kpi(Protocol):
    """A KPI plugin.

    `name` becomes the metric `uptake_<name>` (and `uptake_org_unit_<name>` when
    `by_org_unit`); ratios end in `_ratio`, timestamps in `_timestamp_seconds`.
    """

    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def counts_people(self) -> bool: ...
    @property
    def by_org_unit(self) -> bool: ...
    @property
    def ratio(self) -> bool: ...
    @property
    def denominator_counts_people(self) -> bool: ...

    def query(self, ctx: QueryContext) -> KpiQuery:
        """Return the query computing this KPI at `ctx.now`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiSpec:
    """A ready-made `Kpi` whose query is a function of the context."""

    name: str
    help: str
    build: Callable[[QueryContext], KpiQuery]
    labels: tuple[str, ...] = ()
    counts_people: bool = True
    by_org_unit: bool = False
    ratio: bool = False
    denominator_counts_people: bool = True

    def query(self, ctx: QueryContext) -> KpiQuery:
        """Return the query computing this KPI at `ctx.now`."""
        return self.build(ctx)


def sql_time(moment: dt.datetime) -> str:
    """Return a DateTime64(3, 'UTC') literal for a moment the refresher chose (never input)."""
    text = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{text}', 3, 'UTC')"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryContext:
    """The refresh instant and registry every KPI query is built from.

    Windows are rolling and end at `now`: a window of d days holds the events
    with `now - d days < occurred_at <= now`.
    """

    now: dt.datetime
    registry: Registry

    @property
    def now_sql(self) -> str:
        """Return `now` as a SQL literal."""
        return sql_time(self.now)

    def since_sql(self, days: int) -> str:
        """Return the start (exclusive) of the window of `days` days as a SQL literal."""
        return sql_time(self.now - dt.timedelta(days=days))

    def window_since(self) -> tuple[list[str], str]:
        """Return the window names and a SQL array of their start instants."""
        names = list(WINDOWS)
        return names, "[" + ", ".join(self.since_sql(d) for d in WINDOWS.values()) + "]"

    def qualifying(self, *, tool: str = "tool", action: str = "action") -> str:
        """Return a SQL predicate: the event counts as activity (core actions, when declared)."""
        return (
            f"(NOT has({{core_tools:Array(String)}}, {tool}) "
            f"OR has({{core_pairs:Array(String)}}, concat({tool}, '/', {action})))"
        )

    def parameters(self) -> dict[str, Any]:
        """Return the parameters shared by every query."""
        return {
            "core_tools": self.registry.core_tools(),
            "core_pairs": self.registry.core_pairs(),
            "registered_tools": sorted(self.registry.tools),
        }

    def hour_slice(self, hour: str, *, after: str | None = None, upto: str | None = None) -> str:
        """Return a SELECT of one hour's activity in (`after`, `upto`], exact at both bounds.

        `hour` is a SQL expression of the hour's start. Columns, as in `kpi_user_hours`:
        tool, user_id, org_unit, action, feature, first_at, last_at, events. Hourly rows
        wholly inside the bounds come from the aggregate; raw events are read only for
        the (tool, org unit, person, action, feature) whose hourly row spans a bound,
        so the cost does not grow with the hour's events.
        """
        if after is None and upto is None:
            raise ValueError("an hour slice needs a bound: use kpi_user_hours for whole hours")
        key = "(tool, org_unit, user_id, action, feature)"
        spans = " OR ".join(
            f"(first_at <= {bound} AND last_at > {bound})"
            for bound in (after, upto)
            if bound is not None
        )
        straddling = f"SELECT {key} FROM kpi_user_hours WHERE hour = {hour} AND ({spans})"
        inside = [f"hour = {hour}", f"{key} NOT IN ({straddling})"]
        raw = [f"occurred_at >= {hour}", f"occurred_at < {hour} + INTERVAL 1 HOUR"]
        if after is not None:
            inside.append(f"first_at > {after}")
            raw.append(f"occurred_at > {after}")
        if upto is not None:
            inside.append(f"last_at <= {upto}")
            raw.append(f"occurred_at <= {upto}")
        columns = "tool, user_id, org_unit, action, feature"
        return (
            f"SELECT {columns}, first_at, last_at, events FROM kpi_user_hours "
            f"WHERE {' AND '.join(inside)}\n"
            f"UNION ALL SELECT {columns}, occurred_at AS first_at, occurred_at AS last_at, "
            f"toUInt64(1) AS events FROM events "
            f"WHERE {' AND '.join(raw)} AND {key} IN ({straddling})"
        )

    def current_hour(self) -> str:
        """Return `hour_slice` of the current, partial hour up to `now`."""
        return self.hour_slice(f"toStartOfHour({self.now_sql})", upto=self.now_sql)
