"""Who may send events and read metrics: API keys, TLS, limits, and the guard that applies them.

Authentication is on unless the server runs in dev mode: without an API keys file
(UPTAKE_API_KEYS_FILE) the server refuses to start. Dev mode without a keys file
is open access, and says so loudly at start.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry

from uptake_server.config import Settings, env_name
from uptake_server.errors import ConfigError
from uptake_server.limits import Bounds, InflightLimits
from uptake_server.metrics import ServiceMetrics
from uptake_server.security.guard import IngestGuard
from uptake_server.security.keyfile import KeyFile
from uptake_server.security.metrics_endpoint import (
    MetricsServer,
    read_basic_auth,
    start_metrics_server,
)
from uptake_server.security.ratelimit import RateLimiter
from uptake_server.security.tls import (
    TlsFiles,
    grpc_server_credentials,
    server_ssl_context,
    tls_files,
)

__all__ = ["Security", "load_security", "serve_metrics"]

log = logging.getLogger(__name__)

# Concurrent Ingest calls per gRPC worker thread; beyond, UNAVAILABLE with RetryInfo
# (gRPC's own limit would answer RESOURCE_EXHAUSTED, which clients read as "too large").
CALLS_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class Security:
    """What the gRPC server needs: its interceptor and its credentials (None: plaintext)."""

    guard: IngestGuard
    credentials: grpc.ServerCredentials | None


def load_security(settings: Settings, metrics: ServiceMetrics) -> Security:
    """Read keys and certificates named by the settings; raise ConfigError for what is wrong."""
    keys = None
    if settings.api_keys_file:
        keys = KeyFile(settings.api_keys_file, setting=env_name("api_keys_file"))
        loaded = keys.load()
        if not len(loaded):
            log.warning(
                "the API keys file %s holds no key: every Ingest request is refused", keys.path
            )
    elif not settings.dev:
        raise ConfigError(
            f"no API keys: set {env_name('api_keys_file')} to a keys file made with "
            "`uptake-server keys create`, or run with --dev for open access on a workstation"
        )
    else:
        log.warning("dev mode: no API keys file, so anyone who reaches the gRPC port may send")
    files = _tls_files(settings, "tls")
    limits = InflightLimits(
        Bounds(
            calls=settings.grpc_workers * CALLS_PER_WORKER,
            bytes=settings.max_inflight_bytes,
            events=settings.max_inflight_events,
        ),
        bytes_gauge=metrics.inflight_bytes,
        events_gauge=metrics.inflight_events,
    )
    guard = IngestGuard(
        keys=keys,
        limits=limits,
        rate_limiter=RateLimiter(events_per_second=settings.rate_limit_events_per_second),
        metrics=metrics,
    )
    credentials = grpc_server_credentials(files) if files is not None else None
    return Security(guard=guard, credentials=credentials)


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> MetricsServer:
    """Start the metrics endpoint the settings describe (address, TLS, basic auth)."""
    files = _tls_files(settings, "metrics_tls")
    context: ssl.SSLContext | None = server_ssl_context(files) if files is not None else None
    users = None
    if settings.metrics_basic_auth_file:
        users = read_basic_auth(
            settings.metrics_basic_auth_file, setting=env_name("metrics_basic_auth_file")
        )
    return start_metrics_server(settings.metrics_listen, registry, ssl_context=context, users=users)


def _tls_files(settings: Settings, prefix: str) -> TlsFiles | None:
    names = (f"{prefix}_cert_file", f"{prefix}_key_file", f"{prefix}_client_ca_file")
    cert, key, ca = (str(getattr(settings, name)) for name in names)
    return tls_files(
        cert, key, ca, settings=(env_name(names[0]), env_name(names[1]), env_name(names[2]))
    )
