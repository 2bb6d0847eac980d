"""The built-in KPIs (docs/kpis.md), each a plugin behind the same interface as third-party ones."""

from __future__ import annotations

import datetime as dt

from uptake_server.kpi.definitions import KpiQuery, KpiSpec, QueryContext, sql_time
from uptake_server.kpi.snapshot import SNAPSHOT

_NULL_UNIT = "CAST(NULL AS Nullable(String))"
_LIFECYCLE_STATES = ("new", "returning", "resurrected", "dormant")
RETENTION_WEEKS = (1, 4)


def _window_counts(ctx: QueryContext, *, by_unit: bool) -> str:
    names, since = ctx.window_since()
    unit = "unit" if by_unit else _NULL_UNIT
    group = "tool, unit, w" if by_unit else "tool, w"
    return f"""
SELECT tool, {unit} AS org_unit, [w] AS labels, toFloat64(countIf(last_q > since)) AS num,
       1.0 AS den
FROM {SNAPSHOT}
ARRAY JOIN {names!r} AS w, {since} AS since
WHERE last_q > {ctx.since_sql(28)}
GROUP BY {group}"""


def _active_users(ctx: QueryContext) -> KpiQuery:
    names, _ = ctx.window_since()
    # Registered tools without any activity still get their zeros.
    zeros = f"""
SELECT t AS tool, {_NULL_UNIT} AS org_unit, [w] AS labels, 0.0 AS num, 1.0 AS den
FROM (SELECT arrayJoin({{registered_tools:Array(String)}}) AS t) ARRAY JOIN {names!r} AS w"""
    tool_level = f"""
SELECT tool, org_unit, labels, max(num) AS num, 1.0 AS den
FROM ({_window_counts(ctx, by_unit=False)} UNION ALL {zeros})
GROUP BY tool, org_unit, labels"""
    return KpiQuery(sql=f"{tool_level} UNION ALL {_window_counts(ctx, by_unit=True)}")


def _stickiness(ctx: QueryContext) -> KpiQuery:
    t1, t28 = ctx.since_sql(1), ctx.since_sql(28)
    select = "toFloat64(countIf(last_q > {t1})) AS num, toFloat64(countIf(last_q > {t28})) AS den"
    select = select.format(t1=t1, t28=t28)
    return KpiQuery(
        sql=f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [] AS labels, {select}
FROM {SNAPSHOT} WHERE last_q > {t28} GROUP BY tool
UNION ALL
SELECT tool, unit AS org_unit, [] AS labels, {select}
FROM {SNAPSHOT} WHERE last_q > {t28} GROUP BY tool, unit"""
    )


def _lifecycle(ctx: QueryContext) -> KpiQuery:
    t7 = ctx.since_sql(7)
    states = list(_LIFECYCLE_STATES)
    return KpiQuery(
        sql=f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [state] AS labels, toFloat64(max(n)) AS num, 1.0 AS den
FROM (
    SELECT tool, state, n FROM (
        SELECT tool,
               countIf(a7 AND is_new) AS new_users,
               countIf(a7 AND prev = 1 AND NOT is_new) AS returning_users,
               countIf(a7 AND prev = 0 AND NOT is_new) AS resurrected_users,
               countIf(prev = 1 AND NOT a7) AS dormant_users
        FROM (
            SELECT tool, last_q > {t7} AS a7, prev,
                   is_new
            FROM {SNAPSHOT}
        )
        GROUP BY tool
    )
    ARRAY JOIN {states!r} AS state,
               [new_users, returning_users, resurrected_users, dormant_users] AS n
    UNION ALL
    SELECT t, state, 0 FROM (SELECT arrayJoin({{registered_tools:Array(String)}}) AS t)
    ARRAY JOIN {states!r} AS state
)
GROUP BY tool, state"""
    )


def cohort_weeks(now: dt.datetime) -> dict[int, dt.datetime]:
    """Return, per retention week n, the latest UTC-week cohort start whose week n is over."""
    day = now.astimezone(dt.UTC).date()
    monday = dt.datetime.combine(day - dt.timedelta(days=day.weekday()), dt.time(), dt.UTC)
    return {n: monday - dt.timedelta(weeks=n + 1) for n in RETENTION_WEEKS}


def _retention(ctx: QueryContext) -> KpiQuery:
    q = ctx.qualifying()
    starts = cohort_weeks(ctx.now)
    weeks = list(starts)
    cohort = "[" + ", ".join(sql_time(starts[n]) for n in weeks) + "]"
    active = "[" + ", ".join(
        f"toDate({sql_time(starts[n] + dt.timedelta(weeks=n))})" for n in weeks
    )
    active += "]"
    earliest = min(starts.values())
    latest = max(starts.values()) + dt.timedelta(weeks=1)
    weeks_filter = " OR ".join(
        f"(day >= toDate({sql_time(starts[n] + dt.timedelta(weeks=n))}) "
        f"AND day < toDate({sql_time(starts[n] + dt.timedelta(weeks=n + 1))}))"
        for n in weeks
    )
    cohorts = f"""
        SELECT tool, user_id, min(first_at) AS first_q FROM kpi_first_seen
        WHERE {q}
        GROUP BY tool, user_id
        HAVING first_q >= {sql_time(earliest)} AND first_q < {sql_time(latest)}"""
    return KpiQuery(
        sql=f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [toString(n)] AS labels,
       toFloat64(countIf(hit)) AS num, toFloat64(count()) AS den
FROM (
    SELECT tool, n, (tool, user_id, n) IN (
        SELECT tool, user_id, n FROM (
            SELECT tool, user_id, day FROM kpi_user_days
            WHERE ({weeks_filter}) AND {q}
              AND (tool, user_id) IN (SELECT tool, user_id FROM ({cohorts}))
        )
        ARRAY JOIN {weeks!r} AS n, {active} AS week_start
        WHERE day >= week_start AND day < week_start + 7
    ) AS hit
    FROM ({cohorts})
    ARRAY JOIN {weeks!r} AS n, {cohort} AS cohort_start
    WHERE first_q >= cohort_start AND first_q < cohort_start + INTERVAL 7 DAY
)
GROUP BY tool, n"""
    )


def _registry_pairs(values: str) -> str:
    return (
        "(SELECT tupleElement(p, 1) AS tool, tupleElement(p, 2) AS v "
        f"FROM (SELECT arrayJoin(arrayZip({values})) AS p))"
    )


def _seat_utilisation(ctx: QueryContext) -> KpiQuery:
    tools = {t: s.licensed_seats for t, s in ctx.registry.tools.items() if s.licensed_seats}
    pairs = _registry_pairs("{seat_tools:Array(String)}, {seat_counts:Array(UInt32)}")
    return KpiQuery(
        sql=f"""
SELECT r.tool AS tool, {_NULL_UNIT} AS org_unit, [] AS labels,
       toFloat64(u.n) AS num, toFloat64(r.v) AS den
FROM {pairs} AS r
LEFT JOIN (
    SELECT tool, countIf(last_q > {ctx.since_sql(28)}) AS n FROM {SNAPSHOT} GROUP BY tool
) AS u ON r.tool = u.tool""",
        parameters={"seat_tools": list(tools), "seat_counts": list(tools.values())},
    )


def _feature_usage(ctx: QueryContext) -> str:
    pairs = _registry_pairs("{feature_tools:Array(String)}, {feature_names:Array(String)}")
    return f"""
SELECT r.tool AS tool, r.v AS feature, u.n AS n
FROM {pairs} AS r
LEFT JOIN (
    SELECT tool, f, count() AS n FROM {SNAPSHOT} ARRAY JOIN features AS f GROUP BY tool, f
) AS u ON r.tool = u.tool AND r.v = u.f"""


def _feature_parameters(ctx: QueryContext) -> dict[str, list[str]]:
    pairs = [(t, f) for t, s in ctx.registry.tools.items() for f in s.features]
    return {"feature_tools": [t for t, _ in pairs], "feature_names": [f for _, f in pairs]}


def _feature_users(ctx: QueryContext) -> KpiQuery:
    return KpiQuery(
        sql=f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [feature] AS labels, toFloat64(n) AS num, 1.0 AS den
FROM ({_feature_usage(ctx)})""",
        parameters=_feature_parameters(ctx),
    )


def _feature_breadth(ctx: QueryContext) -> KpiQuery:
    return KpiQuery(
        sql=f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [] AS labels,
       toFloat64(countIf(n > 0)) AS num, toFloat64(count()) AS den
FROM ({_feature_usage(ctx)}) GROUP BY tool""",
        parameters=_feature_parameters(ctx),
    )


def _registry_value(param: str, kind: str, values: dict[str, float]) -> KpiQuery:
    pairs = _registry_pairs(f"{{{param}_tools:Array(String)}}, {{{param}_values:Array({kind})}}")
    return KpiQuery(
        sql=f"SELECT tool, {_NULL_UNIT} AS org_unit, [] AS labels, toFloat64(v) AS num, "
        f"1.0 AS den FROM {pairs}",
        parameters={f"{param}_tools": list(values), f"{param}_values": list(values.values())},
    )


def _go_live(ctx: QueryContext) -> KpiQuery:
    values = {
        t: dt.datetime.combine(s.go_live, dt.time(), dt.UTC).timestamp()
        for t, s in ctx.registry.tools.items()
        if s.go_live is not None
    }
    return _registry_value("go_live", "Float64", values)


def _adoption_target(ctx: QueryContext) -> KpiQuery:
    values = {
        t: float(s.adoption_target)
        for t, s in ctx.registry.tools.items()
        if s.adoption_target is not None
    }
    return _registry_value("target", "Float64", values)


def _last_event(ctx: QueryContext) -> KpiQuery:
    # Tools active in 28 days take it from the snapshot; only the others need a
    # look at older hours (a primary-key range per tool).
    return KpiQuery(
        sql=f"""
SELECT tool, {_NULL_UNIT} AS org_unit, [] AS labels,
       toUnixTimestamp64Milli(max(newest)) / 1000.0 AS num, 1.0 AS den
FROM (
    SELECT tool, max(newest) AS newest FROM {SNAPSHOT} GROUP BY tool
    UNION ALL
    SELECT tool, max(last_at) AS newest FROM kpi_user_hours
    WHERE hour < toStartOfHour({ctx.now_sql})
      AND tool NOT IN (SELECT tool FROM {SNAPSHOT})
    GROUP BY tool
)
GROUP BY tool"""
    )


BUILTIN_KPIS: tuple[KpiSpec, ...] = (
    KpiSpec(
        name="active_users",
        help="People with at least one event (core actions, when declared) in the rolling window.",
        labels=("window",),
        by_org_unit=True,
        build=_active_users,
    ),
    KpiSpec(
        name="stickiness_ratio",
        help="Active users over 1 day divided by active users over 28 days.",
        by_org_unit=True,
        ratio=True,
        build=_stickiness,
    ),
    KpiSpec(
        name="lifecycle_users",
        help="People by lifecycle state over the last 7 days: new, returning, resurrected, "
        "dormant.",
        labels=("state",),
        build=_lifecycle,
    ),
    KpiSpec(
        name="retention_ratio",
        help="Share of the latest complete UTC-week cohort of new users active in week 1 or 4 "
        "after it.",
        labels=("week",),
        ratio=True,
        build=_retention,
    ),
    KpiSpec(
        name="seat_utilisation_ratio",
        help="Active users over 28 days divided by licensed seats.",
        ratio=True,
        denominator_counts_people=False,
        build=_seat_utilisation,
    ),
    KpiSpec(
        name="feature_users",
        help="People who used a known feature of the tool in the last 28 days.",
        labels=("feature",),
        build=_feature_users,
    ),
    KpiSpec(
        name="feature_breadth_ratio",
        help="Share of the tool's known features used by anyone in the last 28 days.",
        counts_people=False,
        ratio=True,
        build=_feature_breadth,
    ),
    KpiSpec(
        name="go_live_timestamp_seconds",
        help="Go-live date of the tool (registry), as a Unix timestamp.",
        counts_people=False,
        build=_go_live,
    ),
    KpiSpec(
        name="adoption_target_ratio",
        help="Adoption target of the tool (registry): the seat utilisation aimed for.",
        counts_people=False,
        build=_adoption_target,
    ),
    KpiSpec(
        name="last_event_timestamp_seconds",
        help="Time of the newest event of the tool, as a Unix timestamp.",
        counts_people=False,
        build=_last_event,
    ),
)
