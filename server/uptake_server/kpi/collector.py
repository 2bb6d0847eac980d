"""The Prometheus collector of the KPI exporter: serves the latest snapshot, never queries.

KPI families are built once per refresh (in `families()`, on the refresher thread)
and kept in the snapshot cache, so a scrape only walks prepared objects. Self-metrics
tell how fresh the cache is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uptake_server.kpi.definitions import DEFINITION_VERSION, Kpi
from uptake_server.kpi.privacy import REASONS, family_name
from uptake_server.kpi.refresher import KpiSnapshot


def families(snapshot: KpiSnapshot, kpis: Sequence[Kpi]) -> list[Metric]:
    """Return the KPI metric families of a snapshot, one per KPI level, even when empty."""
    built: dict[str, GaugeMetricFamily] = {}
    for kpi in kpis:
        levels = (False, True) if kpi.by_org_unit else (False,)
        for org_unit in levels:
            name = family_name(kpi, org_unit=org_unit)
            labels = ["tool", *(["org_unit"] if org_unit else []), *kpi.labels]
            suffix = " Per org unit; units below the minimum group size fold into (other)."
            built[name] = GaugeMetricFamily(
                name, kpi.help + (suffix if org_unit else ""), labels=labels
            )
    for series in snapshot.series:
        family = built.get(series.family)
        if family is not None:
            family.add_metric([value for _, value in series.labels], series.value)
    return list(built.values())


class KpiCollector(Collector):
    """Yield the cached KPI families and the exporter's self-metrics."""

    def __init__(self, kpis: Sequence[Kpi]) -> None:
        self._kpis = list(kpis)
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._snapshot: KpiSnapshot | None = None
        self._errors = 0

    def publish(self, snapshot: KpiSnapshot) -> None:
        """Replace the served snapshot (called after each successful refresh)."""
        prepared = families(snapshot, self._kpis)
        with self._lock:
            self._families, self._snapshot = prepared, snapshot

    def count_error(self) -> None:
        """Count a failed refresh."""
        with self._lock:
            self._errors += 1

    def describe(self) -> list[Metric]:
        """Return nothing: the families depend on the plugins and are checked at load."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the latest snapshot and the self-metrics."""
        with self._lock:
            prepared, snapshot, errors = self._families, self._snapshot, self._errors
        info = GaugeMetricFamily(
            "uptake_kpi_definitions_info",
            "Version of the KPI definitions (docs/kpis.md); the value is always 1.",
            labels=["definition_version"],
        )
        info.add_metric([DEFINITION_VERSION], 1)
        yield info
        last = GaugeMetricFamily(
            "uptake_kpi_refresh_last_success_timestamp_seconds",
            "When the served KPI snapshot was computed (0 before the first success).",
            value=snapshot.taken_at if snapshot else 0,
        )
        duration = GaugeMetricFamily(
            "uptake_kpi_refresh_duration_seconds",
            "Duration of the refresh that computed the served KPI snapshot.",
            value=snapshot.duration_seconds if snapshot else 0,
        )
        failures = CounterMetricFamily(
            "uptake_kpi_refresh_errors", "KPI refreshes that failed.", value=errors
        )
        suppressed = GaugeMetricFamily(
            "uptake_kpi_series_suppressed",
            "KPI series withheld from the served snapshot, by reason: min_group_size, "
            "complementary (to protect a withheld group), cardinality.",
            labels=["reason"],
        )
        for reason in REASONS:
            suppressed.add_metric([reason], snapshot.suppressed.get(reason, 0) if snapshot else 0)
        yield from (last, duration, failures, suppressed)
        yield from prepared
