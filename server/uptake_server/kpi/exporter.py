"""The KPI exporter: registry, plugins, backfill, refresher and collector, wired together.

`KpiExporter` is what the ingestion service embeds (the default `serve` role);
`KpiService` runs it alone with its own metrics endpoint (the `kpi` role).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from prometheus_client import CollectorRegistry

from uptake_server.activities.exporter import ActivityCollector
from uptake_server.activities.store import open_activities
from uptake_server.config import Settings
from uptake_server.errors import ConfigError, StoreError
from uptake_server.kpi.backfill import backfill
from uptake_server.kpi.collector import KpiCollector
from uptake_server.kpi.plugins import discover_kpis
from uptake_server.kpi.reader import KpiReader
from uptake_server.kpi.refresher import KpiSnapshot, PrivacyLimits, Refresher
from uptake_server.registry import load_registry
from uptake_server.security import serve_metrics
from uptake_server.security.metrics_endpoint import MetricsServer
from uptake_server.store import ClickHouseStore, open_store, schema_context

log = logging.getLogger(__name__)


def privacy_limits(settings: Settings) -> PrivacyLimits:
    """Return the privacy and cardinality limits the settings choose."""
    return PrivacyLimits(
        min_group_size=settings.min_group_size,
        max_org_units_per_tool=settings.max_org_units_per_tool,
        max_unregistered_tools=settings.max_unregistered_tools,
    )


class KpiExporter:
    """Refresh KPIs in the background and serve them from a collector in `registry`."""

    def __init__(self, settings: Settings, store: object, *, registry: CollectorRegistry) -> None:
        if not isinstance(store, ClickHouseStore):
            raise ConfigError(f"the KPI exporter needs a ClickHouse store, not {type(store)}")
        tools = load_registry(settings.registry_file or None)
        self.kpis = discover_kpis(tools)
        reader = KpiReader(store)
        backfill(reader)
        self.collector = KpiCollector(self.kpis)
        self.activities = ActivityCollector(
            store,
            reader,
            registry=tools,
            min_group_size=settings.min_group_size,
            window_days=settings.activity_window_days,
            max_activities=settings.max_activities,
        )
        self.refresher = Refresher(
            reader,
            kpis=self.kpis,
            registry=tools,
            limits=privacy_limits(settings),
            interval=settings.kpi_refresh_seconds,
            on_snapshot=self._publish,
            on_error=self.collector.count_error,
        )
        registry.register(self.collector)
        registry.register(self.activities)
        self._registry = registry

    def _publish(self, snapshot: KpiSnapshot) -> None:
        """Serve a new KPI snapshot, then the activity figures at the same instant."""
        self.collector.publish(snapshot)
        try:
            self.activities.refresh(now=dt.datetime.fromtimestamp(snapshot.taken_at, dt.UTC))
        except StoreError as exc:
            self.collector.count_error()
            log.warning("activity refresh failed (serving the previous figures): %s", exc)

    def start(self) -> None:
        """Start the background refresh (the first one right away)."""
        self.refresher.start()

    def stop(self) -> None:
        """Stop refreshing and unregister the collector."""
        self.refresher.stop()
        self._registry.unregister(self.collector)
        self._registry.unregister(self.activities)


class KpiService:
    """The KPI exporter alone: store, refresher and the metrics endpoint."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = open_store(settings)
        self._http: MetricsServer | None = None
        self._stopped = threading.Event()
        try:
            self.store.migrate(schema_context(settings))
            open_activities(
                self.store,
                registry=load_registry(settings.registry_file or None),
                source=settings.registry_file,
            )
            self.exporter = KpiExporter(settings, self.store, registry=self.registry)
        except BaseException:
            self.store.close()
            raise

    @property
    def metrics_url(self) -> str:
        """Return the URL of the metrics endpoint (after start)."""
        host = self.settings.metrics_listen.rpartition(":")[0]
        port = self._http.server_port if self._http else 0
        scheme = self._http.scheme if self._http else "http"
        return f"{scheme}://{host}:{port}/metrics"

    def start(self) -> None:
        """Serve /metrics and start refreshing."""
        self._http = serve_metrics(self.settings, self.registry)
        self.exporter.start()

    def stop(self) -> None:
        """Stop refreshing and serving, then close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.exporter.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.store.close()
        log.info("stopped")
