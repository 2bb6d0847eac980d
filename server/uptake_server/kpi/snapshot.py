"""The per-person snapshot every built-in KPI reads: one row per (tool, user) active in 28 days.

Built once per refresh, as a materialized CTE named `user_snapshot`, from the
hourly aggregate (`kpi_user_hours`). Each hourly row keeps the first and last event
time of its hour, which is enough to place activity exactly at window boundaries:
"an event in (a, b]" is `last_at > a AND first_at <= b` for spans of an hour or more.
The current, partial hour is `QueryContext.current_hour`: its hourly rows up to now,
and raw events only of the rows that also hold events after now.

Columns:
    tool, user_id
    last_q     newest qualifying event (core actions, if declared) at or before now
    unit       org unit of that event; ties broken by the larger org unit name
    prev       1 when active (qualifying) in the previous 7 days, (now-14d, now-7d]
    features   features used (any action) in the last 28 days
    is_new     1 when the first qualifying event ever (kpi_first_seen) is in the last
               7 days
    newest     newest event of any action in the last 28 days
"""

from __future__ import annotations

from uptake_server.kpi.definitions import QueryContext

SNAPSHOT = "user_snapshot"


def snapshot_sql(ctx: QueryContext) -> str:
    """Return the SELECT that builds the snapshot."""
    q = ctx.qualifying()
    t28, t14, t7 = ctx.since_sql(28), ctx.since_sql(14), ctx.since_sql(7)
    columns = "tool, user_id, org_unit, action, feature"
    # Two levels: per (tool, person, org unit) first, which is cheap, then per
    # person, where picking the org unit of the latest event (a tuple comparison)
    # runs over a handful of rows per person instead of every hourly row.
    return f"""
SELECT tool, user_id,
       max(unit_last) AS last_q,
       argMax(org_unit, (unit_last, org_unit)) AS unit,
       max(unit_prev) AS prev,
       arrayDistinct(arrayFlatten(groupArray(unit_features))) AS features,
       (tool, user_id) IN (
           SELECT tool, user_id FROM kpi_first_seen WHERE {q}
           GROUP BY tool, user_id
           HAVING min(first_at) > {t7} AND min(first_at) <= {ctx.now_sql}
       ) AS is_new,
       max(unit_newest) AS newest
FROM (
    SELECT tool, user_id, org_unit,
           maxIf(last_at, q) AS unit_last,
           maxIf(toUInt8(1), q AND last_at > {t14} AND first_at <= {t7}) AS unit_prev,
           groupUniqArrayIf(feature, feature != '') AS unit_features,
           max(last_at) AS unit_newest
    FROM (
        SELECT {columns}, first_at, last_at, {q} AS q
        FROM kpi_user_hours
        WHERE hour >= toStartOfHour({t28}) AND hour < toStartOfHour({ctx.now_sql})
          AND last_at > {t28}
        UNION ALL
        SELECT {columns}, first_at, last_at, {q} AS q FROM ({ctx.current_hour()})
    )
    GROUP BY tool, user_id, org_unit
)
GROUP BY tool, user_id
"""
