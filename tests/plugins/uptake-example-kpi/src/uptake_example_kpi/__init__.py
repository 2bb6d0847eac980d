"""Example Uptake plugins: people using two or more features, and a feature-filling enricher."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from uptake_server.kpi.definitions import KpiQuery, KpiSpec, QueryContext


def _multi_feature(ctx: QueryContext) -> KpiQuery:
    # Reads the per-person snapshot; each person counts once, in one org unit.
    select = "toFloat64(countIf(length(features) >= 2)) AS num, 1.0 AS den"
    return KpiQuery(
        sql=f"""
SELECT tool, CAST(NULL AS Nullable(String)) AS org_unit, [] AS labels, {select}
FROM user_snapshot WHERE last_q > {ctx.since_sql(28)} GROUP BY tool
UNION ALL
SELECT tool, unit AS org_unit, [] AS labels, {select}
FROM user_snapshot WHERE last_q > {ctx.since_sql(28)} GROUP BY tool, unit"""
    )


MULTI_FEATURE_USERS = KpiSpec(
    name="multi_feature_users",
    help="People active in 28 days who used at least two features.",
    by_org_unit=True,
    build=_multi_feature,
)


class _DefaultFeature:
    def __init__(self, feature: str) -> None:
        self.feature = feature

    def enrich(self, events: Sequence[Any]) -> None:
        for event in events:
            if not event.feature:
                event.feature = self.feature


def default_feature(settings: object) -> _DefaultFeature | None:
    """Fill empty features with $UPTAKE_EXAMPLE_DEFAULT_FEATURE, when it is set."""
    feature = os.environ.get("UPTAKE_EXAMPLE_DEFAULT_FEATURE")
    return _DefaultFeature(feature) if feature else None
