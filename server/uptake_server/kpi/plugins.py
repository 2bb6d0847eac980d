"""Find every KPI: the built-ins, those declared in the registry YAML, and entry-point plugins.

Third-party KPIs are published in the `uptake.kpis` entry-point group. An entry
point may name a `Kpi`, an iterable of them, or a callable taking the `Registry`
and returning either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from uptake_server.errors import ConfigError
from uptake_server.kpi.builtin import BUILTIN_KPIS
from uptake_server.kpi.definitions import Kpi, KpiQuery, KpiSpec, QueryContext
from uptake_server.registry import WINDOWS, DeclaredKpi, Registry

log = logging.getLogger(__name__)

KPI_GROUP = "uptake.kpis"
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NULL_UNIT = "CAST(NULL AS Nullable(String))"


def declared_kpi(decl: DeclaredKpi) -> KpiSpec:
    """Return the KPI a registry entry declares."""
    prefix = f"declared_{decl.name}"

    def build(ctx: QueryContext) -> KpiQuery:
        params: dict[str, object] = {f"{prefix}_action": decl.action}
        where = f"action = {{{prefix}_action:String}}"
        if decl.tool is not None:
            params[f"{prefix}_tool"] = decl.tool
            where += f" AND tool = {{{prefix}_tool:String}}"
        if decl.kind == "users":
            return KpiQuery(sql=_users_sql(ctx, WINDOWS[decl.window], where), parameters=params)
        return KpiQuery(sql=_events_per_day_sql(ctx, where), parameters=params)

    window = f" in the last {decl.window}" if decl.kind == "users" else ""
    return KpiSpec(
        name=decl.name,
        help=f"{decl.help} (declared: {decl.kind} of action {decl.action}{window})",
        counts_people=decl.kind == "users",
        build=build,
    )


def _users_sql(ctx: QueryContext, days: int, where: str) -> str:
    since = ctx.since_sql(days)
    return f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [] AS labels, toFloat64(uniqExact(user_id)) AS num,
       1.0 AS den
FROM (
    SELECT tool, user_id FROM kpi_user_hours
    WHERE hour >= toStartOfHour({since}) AND hour < toStartOfHour({ctx.now_sql})
      AND last_at > {since} AND {where}
    UNION ALL
    SELECT tool, user_id FROM ({ctx.current_hour()}) WHERE {where}
)
GROUP BY tool"""


def _events_per_day_sql(ctx: QueryContext, where: str) -> str:
    # Whole hours from the aggregate; the two partial hours at the window's edges
    # as hour slices (raw events only where an hourly row spans an edge).
    since, now = ctx.since_sql(1), ctx.now_sql
    first = ctx.hour_slice(f"toStartOfHour({since})", after=since)
    return f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [] AS labels, toFloat64(sum(n)) AS num, 1.0 AS den
FROM (
    SELECT tool, sum(events) AS n FROM kpi_user_hours
    WHERE hour > toStartOfHour({since}) AND hour < toStartOfHour({now}) AND {where}
    GROUP BY tool
    UNION ALL
    SELECT tool, sum(events) AS n FROM ({first} UNION ALL {ctx.current_hour()})
    WHERE {where}
    GROUP BY tool
)
GROUP BY tool"""


def discover_kpis(registry: Registry, *, plugins: bool = True) -> list[Kpi]:
    """Return the built-in, declared and (optionally) entry-point KPIs, checked for clashes."""
    kpis: list[tuple[Kpi, str]] = [(k, "built-in") for k in BUILTIN_KPIS]
    kpis += [(declared_kpi(d), "the tool registry") for d in registry.kpis]
    if plugins:
        for ep in entry_points(group=KPI_GROUP):
            kpis += [(k, f"entry point {ep.name!r} ({ep.value})") for k in _load(ep, registry)]
    seen: dict[str, str] = {}
    for kpi, source in kpis:
        if not _NAME.fullmatch(kpi.name):
            raise ConfigError(f"KPI {kpi.name!r} from {source}: the name must be a-z, 0-9, _")
        if kpi.name in seen:
            raise ConfigError(
                f"KPI {kpi.name!r} from {source} clashes with the one from {seen[kpi.name]}"
            )
        seen[kpi.name] = source
    return [kpi for kpi, _ in kpis]


def _load(ep: EntryPoint, registry: Registry) -> list[Kpi]:
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, Kpi):
            obj = obj(registry)
    except Exception as exc:
        raise ConfigError(
            f"KPI entry point {ep.name!r} ({ep.value}) failed to load: {exc}"
        ) from exc
    found = [obj] if isinstance(obj, Kpi) else list(obj) if isinstance(obj, Iterable) else [obj]
    for item in found:
        if not isinstance(item, Kpi):
            raise ConfigError(
                f"KPI entry point {ep.name!r} ({ep.value}) gave {type(item).__name__}, not a Kpi"
            )
    log.info("KPI plugin %s: %s", ep.name, ", ".join(k.name for k in found))
    return found
