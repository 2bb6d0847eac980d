"""The activity metric families, computed after each KPI refresh and served from a cache.

`uptake_activity_start_timestamp_seconds{tool,kind,activity}` marks the activities that
started in the last `UPTAKE_ACTIVITY_WINDOW_DAYS` (at most `UPTAKE_MAX_ACTIVITIES`, the
newest); `uptake_activity_uplift_ratio{tool,activity}` gives the measured effect of those
whose 14 days after are over and whose groups reach the minimum group size. A scrape
never queries the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uptake_server.activities.effect import MEASURED
from uptake_server.activities.measure import Measurer, Queryable
from uptake_server.activities.report import effects, recent
from uptake_server.activities.store import ActivityBackend, ActivityStore
from uptake_server.registry import Registry

log = logging.getLogger(__name__)

START_FAMILY = "uptake_activity_start_timestamp_seconds"
UPLIFT_FAMILY = "uptake_activity_uplift_ratio"


def _empty_families(window_days: int) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    start = GaugeMetricFamily(
        START_FAMILY,
        f"Start of an adoption activity of the last {window_days} days, as a Unix timestamp "
        "(Grafana annotations).",
        labels=["tool", "kind", "activity"],
    )
    uplift = GaugeMetricFamily(
        UPLIFT_FAMILY,
        "Measured effect of an adoption activity: relative change of the mean 7-day active "
        "users of the targeted org units over the 14 days after it against the 14 days "
        "before, minus that of the other org units (docs/activities.md).",
        labels=["tool", "activity"],
    )
    return start, uplift


class ActivityCollector(Collector):
    """Compute the activity families on demand (`refresh`) and yield the latest ones."""

    def __init__(
        self,
        backend: ActivityBackend,
        reader: Queryable,
        *,
        registry: Registry,
        min_group_size: int,
        window_days: int,
        max_activities: int,
    ) -> None:
        self._store = ActivityStore(backend, registry=registry, reader=reader)
        self._measurer = Measurer(reader, registry=registry, k=min_group_size)
        self._window_days = window_days
        self._max = max_activities
        self._lock = threading.Lock()
        self._families: list[Metric] = list(_empty_families(window_days))

    def refresh(self, *, now: dt.datetime) -> int:
        """Recompute the families at `now`; return the number of activities exported."""
        everything = self._store.find()
        started = recent(everything, now=now, window_days=self._window_days, limit=len(everything))
        shown = started[: self._max]
        start, uplift = _empty_families(self._window_days)
        for activity in shown:
            start.add_metric([activity.tool, activity.kind, activity.id], activity.start_ms / 1000)
        for effect in effects(everything, shown, self._measurer, now=now):
            if effect.status == MEASURED and effect.uplift is not None:
                uplift.add_metric([effect.activity.tool, effect.activity.id], effect.uplift)
        with self._lock:
            self._families = [start, uplift]
        if len(started) > len(shown):
            log.info(
                "%d activities of the last %d days not exported (at most %d)",
                len(started) - len(shown),
                self._window_days,
                self._max,
            )
        return len(shown)

    def describe(self) -> list[Metric]:
        """Return the two families (empty), so the registry knows their names."""
        return list(_empty_families(self._window_days))

    def collect(self) -> Iterator[Metric]:
        """Yield the families of the latest refresh."""
        with self._lock:
            families = list(self._families)
        yield from families
