"""Assemble the running service: store, group commit, gRPC server, health, metrics endpoint."""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from uptake.v1 import activity_pb2, activity_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from uptake_server.activities.servicer import ActivityServicer, activity_servicer
from uptake_server.config import Settings
from uptake_server.enrich.base import chain, load_enrichers
from uptake_server.errors import StoreError
from uptake_server.ingest.pseudonym import Pseudonymiser, load_key
from uptake_server.ingest.servicer import IngestServicer
from uptake_server.ingest.validation import Limits
from uptake_server.kpi.exporter import KpiExporter
from uptake_server.metrics import ServiceMetrics
from uptake_server.security import Security, load_security, serve_metrics
from uptake_server.security.metrics_endpoint import MetricsServer
from uptake_server.store import open_store, schema_context
from uptake_server.store.group_commit import GroupCommitter
from uptake_server.store.protocol import EventStore
from uptake_server.telemetry import Telemetry, open_telemetry
from uptake_server.telemetry.interceptor import RequestInterceptor

log = logging.getLogger(__name__)

INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
ACTIVITY_SERVICE = activity_pb2.DESCRIPTOR.services_by_name["ActivityService"].full_name


def create_server(
    settings: Settings,
    *,
    servicer: IngestServicer,
    health_servicer: health.HealthServicer,
    security: Security | None = None,
    telemetry: Telemetry | None = None,
    activities: ActivityServicer | None = None,
) -> tuple[grpc.Server, int]:
    """Build the gRPC server with ingest, health and reflection; return it and its bound port."""
    # Outermost: refusals of the guard get a request id and a span too.
    interceptors: list[grpc.ServerInterceptor] = [
        RequestInterceptor(tracer=telemetry.tracer if telemetry is not None else None)
    ]
    if security is not None:
        interceptors.append(security.guard)
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=settings.grpc_workers, thread_name_prefix="uptake-grpc"
        ),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        # The guard bounds concurrent calls with UNAVAILABLE + RetryInfo; gRPC's own
        # maximum_concurrent_rpcs would answer RESOURCE_EXHAUSTED ("too large").
        interceptors=interceptors,
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if activities is not None:
        activity_pb2_grpc.add_ActivityServiceServicer_to_server(activities, server)
    reflection.enable_server_reflection(
        (
            INGEST_SERVICE,
            *((ACTIVITY_SERVICE,) if activities is not None else ()),
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if security is not None and security.credentials is not None:
        port = server.add_secure_port(settings.grpc_listen, security.credentials)
    else:
        port = server.add_insecure_port(settings.grpc_listen)
    if port == 0:
        raise OSError(f"cannot bind the gRPC address {settings.grpc_listen}")
    return server, port


class Service:
    """The ingestion service with everything it owns; `stop()` releases all of it."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        # A telemetry passed in belongs to the caller; one built here is shut down by stop().
        self._own_telemetry = telemetry is None
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ServiceMetrics(registry=self.registry)
        pseudonymiser = Pseudonymiser(load_key(settings))
        self.security = load_security(settings, self.metrics)
        self.store: EventStore = open_store(settings)
        self._stopped = threading.Event()
        self._metrics_http: MetricsServer | None = None
        try:
            if self._own_telemetry:
                self.telemetry = open_telemetry(settings)
            self.store.migrate(schema_context(settings))
            self.store.recover()
            self.committer = GroupCommitter(
                self.store,
                max_rows=settings.commit_max_rows,
                max_delay_seconds=settings.commit_max_delay_ms / 1000,
                max_pending=settings.max_pending_events,
                writers=settings.commit_writers,
                metrics=self.metrics,
                tracer=self.telemetry.tracer,
            )
            self.health = health.HealthServicer()
            servicer = IngestServicer(
                committer=self.committer,
                pseudonymise=pseudonymiser,
                limits=Limits(
                    max_clock_skew_ms=settings.max_clock_skew_seconds * 1000,
                    retention_ms=settings.retention_days * 86_400_000,
                ),
                max_events_per_request=settings.max_events_per_request,
                metrics=self.metrics,
                enrich=chain(load_enrichers(settings)),
                tracer=self.telemetry.tracer,
            )
            self.server, self.grpc_port = create_server(
                settings,
                servicer=servicer,
                health_servicer=self.health,
                security=self.security,
                telemetry=self.telemetry,
                activities=activity_servicer(settings, self.store),
            )
            self.kpi: KpiExporter | None = None
            if settings.kpi_enabled:
                self.kpi = KpiExporter(settings, self.store, registry=self.registry)
        except BaseException:
            self.store.close()
            if self._own_telemetry:
                self.telemetry.shutdown()
            raise
        self._prober = threading.Thread(target=self._probe, name="uptake-health", daemon=True)
        self._roller = threading.Thread(target=self._roll_up, name="uptake-rollup", daemon=True)
        self._trimmer = threading.Thread(target=self._trim, name="uptake-memory", daemon=True)

    @property
    def grpc_target(self) -> str:
        """Return host:port where the gRPC server listens."""
        host = self.settings.grpc_listen.rpartition(":")[0]
        return f"{host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Return the URL of the metrics endpoint (after start)."""
        host = self.settings.metrics_listen.rpartition(":")[0]
        port = self._metrics_http.server_port if self._metrics_http else 0
        scheme = self._metrics_http.scheme if self._metrics_http else "http"
        return f"{scheme}://{host}:{port}/metrics"

    def start(self) -> None:
        """Start serving gRPC and metrics."""
        self._metrics_http = serve_metrics(self.settings, self.registry)
        # Health is known before the first call is accepted: a probe never sees
        # the default "" SERVING while the ingest service is still unknown.
        self._set_health(self.store.ping())
        self.server.start()
        self._prober.start()
        self._roller.start()
        if self.settings.memory_trim_interval_ms:
            self._trimmer.start()
        if self.kpi is not None:
            self.kpi.start()
        try:
            released = self.store.trim_memory(code="evict")
        except StoreError as exc:
            log.warning("giving the engine's unused memory back failed: %s", exc)
        else:
            if released:
                log.info("released %.0f MB of the store engine's start-up code", released / 2**20)

    def _probe(self) -> None:
        while not self._stopped.wait(self.settings.health_interval_seconds):
            self._set_health(self.store.ping())

    def _roll_up(self) -> None:
        """Roll new events up into the derived tables, off the acknowledgement path."""
        interval = self.settings.rollup_interval_ms / 1000
        while not self._stopped.wait(interval):
            started = time.perf_counter()
            try:
                if self.store.roll_up():
                    self.metrics.rollup_duration.observe(time.perf_counter() - started)
            except StoreError as exc:
                log.warning("roll-up failed (retrying in %.1f s): %s", interval, exc)
            self.metrics.rollup_pending.set(self.store.rollup_pending)

    def _trim(self) -> None:
        """Give back what the embedded engine holds unused (store/memory.py): the pages
        its inserts, merges and queries freed, every interval; the code mapped since the
        last time, every code interval."""
        interval = self.settings.memory_trim_interval_ms / 1000
        code_interval = self.settings.code_unmap_interval_seconds
        code_due = time.monotonic() + code_interval
        while not self._stopped.wait(interval):
            unmap = bool(code_interval) and time.monotonic() >= code_due
            try:
                released = self.store.trim_memory(code="unmap" if unmap else "")
            except StoreError as exc:
                log.warning("giving the engine's unused memory back failed: %s", exc)
                continue
            if unmap:
                code_due = time.monotonic() + code_interval
                log.debug("unmapped %.1f MB of the store engine's code", released / 2**20)

    def _set_health(self, up: bool) -> None:
        if self._stopped.is_set():
            return
        self.metrics.store_up.set(1 if up else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if up
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # "" answers for the process (liveness: a store outage must not restart
        # pods); the ingest service follows the store (readiness).
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set(INGEST_SERVICE, status)

    def stop(self) -> None:
        """Report NOT_SERVING, stop accepting, drain in-flight requests, close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        if self.settings.shutdown_delay_seconds:
            log.info(
                "health is NOT_SERVING; stopping in %.1f s", self.settings.shutdown_delay_seconds
            )
            threading.Event().wait(self.settings.shutdown_delay_seconds)
        self.server.stop(self.settings.shutdown_grace_seconds).wait()
        self.committer.close()
        if self.kpi is not None:
            self.kpi.stop()
        for thread in (self._prober, self._roller, self._trimmer):
            if thread.is_alive():
                thread.join()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self.store.close()
        if self._own_telemetry:
            self.telemetry.shutdown()
        log.info("stopped")
