"""Every Prometheus metric of the ingestion service, defined in one place.

Label sets are bounded: outcomes, rejection codes and gRPC status names are
fixed lists; there is never a per-user or per-event label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from uptake_server import __version__

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)


class ServiceMetrics:
    """The ingestion metrics, registered in one registry."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "uptake_ingest_events",
            "Events received, by outcome: accepted (newly stored), duplicate (already stored), "
            "rejected (invalid, kept in failed_events).",
            ["outcome"],
            registry=registry,
        )
        self.rejections = Counter(
            "uptake_ingest_rejections",
            "Rejected events by reason code.",
            ["reason"],
            registry=registry,
        )
        self.requests = Counter(
            "uptake_ingest_requests",
            "Ingest requests by gRPC status code.",
            ["code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "uptake_ingest_request_duration_seconds",
            "Time from receiving an Ingest request to answering it (stored or failed).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            "uptake_ingest_batch_events",
            "Events per Ingest request.",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.insert_duration = Histogram(
            "uptake_store_insert_duration_seconds",
            "Time of one group-commit insert into the store.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.insert_rows = Histogram(
            "uptake_store_insert_rows",
            "Rows per group-commit insert.",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.pending = Gauge(
            "uptake_store_pending_events",
            "Events received and waiting to be committed to the store.",
            registry=registry,
        )
        self.rollup_duration = Histogram(
            "uptake_store_rollup_duration_seconds",
            "Time of one roll-up of new events into the KPI aggregates (embedded store).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rollup_pending = Gauge(
            "uptake_store_rollup_pending_events",
            "Events committed and not yet rolled up into the KPI aggregates (embedded store).",
            registry=registry,
        )
        self.store_up = Gauge(
            "uptake_store_up",
            "1 when the last store probe succeeded, 0 when it failed.",
            registry=registry,
        )
        self.inflight_bytes = Gauge(
            "uptake_ingest_inflight_bytes",
            "Raw bytes of the Ingest requests in flight (bound: UPTAKE_MAX_INFLIGHT_BYTES).",
            registry=registry,
        )
        self.inflight_events = Gauge(
            "uptake_ingest_inflight_events",
            "Events of the Ingest requests in flight (bound: UPTAKE_MAX_INFLIGHT_EVENTS).",
            registry=registry,
        )
        build = Gauge(
            "uptake_build_info",
            "Build information; the value is always 1.",
            ["version"],
            registry=registry,
        )
        build.labels(version=__version__).set(1)
        for outcome in ("accepted", "duplicate", "rejected"):
            self.events.labels(outcome=outcome)
