"""Server settings: one frozen object, the only place that reads the environment.

Each setting comes from a constructor argument (the CLI passes its flags), else
the ``UPTAKE_*`` environment variable named in its field metadata, else the
documented default. Invalid values fail at start-up with a message that names
the setting and its environment variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uptake_server.errors import ConfigError
from uptake_server.otel_variables import check_otlp_protocol, tracing_from_otel

MIN_GROUP_SIZE_FLOOR = 3
TRACE_EXPORTERS = ("off", "otlp", "console")
# More writers than this only contend for the same disk and cores (docs/performance.md).
MAX_COMMIT_WRITERS = 8
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.{}-]+")


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated server settings."""

    grpc_listen: str = _setting("UPTAKE_GRPC_LISTEN", "127.0.0.1:50051", "gRPC bind address")
    metrics_listen: str = _setting(
        "UPTAKE_METRICS_LISTEN", "127.0.0.1:9464", "Prometheus /metrics bind address"
    )
    data_dir: str = _setting("UPTAKE_DATA_DIR", "./var", "local data directory")
    store_dsn: str = _setting(
        "UPTAKE_STORE_DSN", "", "chdb:///abs/path or http(s)://user@host:8123/db"
    )
    store_password_file: str = _setting(
        "UPTAKE_STORE_PASSWORD_FILE", "", "file holding the ClickHouse password"
    )
    pseudonym_key: str = _setting("UPTAKE_PSEUDONYM_KEY", "", "HMAC key for user ids")
    pseudonym_key_file: str = _setting(
        "UPTAKE_PSEUDONYM_KEY_FILE", "", "file holding the HMAC key for user ids"
    )
    dev: bool = _setting("UPTAKE_DEV", False, "dev mode: generated key, open access")
    registry_file: str = _setting("UPTAKE_REGISTRY_FILE", "", "tool registry YAML")
    log_level: str = _setting("UPTAKE_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting("UPTAKE_LOG_FORMAT", "text", "text or json")
    max_message_bytes: int = _setting(
        "UPTAKE_MAX_MESSAGE_BYTES", 8 * 1024 * 1024, "largest accepted gRPC message"
    )
    max_events_per_request: int = _setting(
        "UPTAKE_MAX_EVENTS_PER_REQUEST", 10_000, "most events in one Ingest request"
    )
    max_clock_skew_seconds: int = _setting(
        "UPTAKE_MAX_CLOCK_SKEW_SECONDS", 300, "how far in the future an event may be"
    )
    retention_days: int = _setting(
        "UPTAKE_RETENTION_DAYS", 396, "raw events kept this long (13 months)"
    )
    failed_retention_days: int = _setting(
        "UPTAKE_FAILED_RETENTION_DAYS", 30, "rejected events kept this long"
    )
    commit_max_rows: int = _setting(
        "UPTAKE_COMMIT_MAX_ROWS", 50_000, "group commit: insert at this many rows"
    )
    commit_max_delay_ms: int = _setting(
        "UPTAKE_COMMIT_MAX_DELAY_MS", 0, "group commit: extra wait to fill an insert"
    )
    commit_writers: int = _setting(
        "UPTAKE_COMMIT_WRITERS", 1, "group commit: inserts that may run at once"
    )
    max_pending_events: int = _setting(
        "UPTAKE_MAX_PENDING_EVENTS", 200_000, "events waiting for the store before UNAVAILABLE"
    )
    rollup_interval_ms: int = _setting(
        "UPTAKE_ROLLUP_INTERVAL_MS",
        3000,
        "embedded store: how often new events are rolled up into the derived tables",
    )
    memory_trim_interval_ms: int = _setting(
        "UPTAKE_MEMORY_TRIM_INTERVAL_MS",
        250,
        "embedded store: how often the engine hands back the pages it freed (0: never)",
    )
    code_unmap_interval_seconds: float = _setting(
        "UPTAKE_CODE_UNMAP_INTERVAL_SECONDS",
        5.0,
        "embedded store: how often the engine's code mapped since is unmapped (0: never)",
    )
    grpc_workers: int = _setting("UPTAKE_GRPC_WORKERS", 32, "gRPC handler threads")
    health_interval_seconds: float = _setting(
        "UPTAKE_HEALTH_INTERVAL_SECONDS", 5.0, "how often the store is probed"
    )
    shutdown_delay_seconds: float = _setting(
        "UPTAKE_SHUTDOWN_DELAY_SECONDS", 0.0, "NOT_SERVING time before the server stops accepting"
    )
    shutdown_grace_seconds: float = _setting(
        "UPTAKE_SHUTDOWN_GRACE_SECONDS", 10.0, "time in-flight requests get to finish"
    )
    min_group_size: int = _setting(
        "UPTAKE_MIN_GROUP_SIZE", 5, "minimum group size k for KPI export (at least 3)"
    )
    kpi_refresh_seconds: float = _setting(
        "UPTAKE_KPI_REFRESH_SECONDS", 60.0, "KPI refresh interval"
    )
    kpi_enabled: bool = _setting(
        "UPTAKE_KPI_ENABLED", True, "serve also exports the adoption KPIs (one exporter only)"
    )
    max_org_units_per_tool: int = _setting(
        "UPTAKE_MAX_ORG_UNITS_PER_TOOL", 200, "org units exported per tool; the rest fold"
    )
    max_unregistered_tools: int = _setting(
        "UPTAKE_MAX_UNREGISTERED_TOOLS", 50, "tools outside the registry that are measured"
    )
    org_unit_csv: str = _setting(
        "UPTAKE_ORG_UNIT_CSV", "", "CSV (user_id,org_unit) filling missing org units at ingest"
    )
    activity_window_days: int = _setting(
        "UPTAKE_ACTIVITY_WINDOW_DAYS", 90, "adoption activities exported this long after start"
    )
    max_activities: int = _setting(
        "UPTAKE_MAX_ACTIVITIES", 100, "adoption activities exported at most; the oldest drop"
    )
    store_password: str = field(
        default="",
        repr=False,
        metadata={"env": "UPTAKE_STORE_PASSWORD", "doc": "ClickHouse password (prefer the file)"},
    )
    store_ca_file: str = _setting(
        "UPTAKE_STORE_CA_FILE", "", "CA bundle that signs the ClickHouse server certificate (https)"
    )
    store_connect_timeout_seconds: int = _setting(
        "UPTAKE_STORE_CONNECT_TIMEOUT_SECONDS", 5, "time to connect to ClickHouse"
    )
    store_query_timeout_seconds: int = _setting(
        "UPTAKE_STORE_QUERY_TIMEOUT_SECONDS", 20, "time a ClickHouse statement may take"
    )
    cluster: str = _setting(
        "UPTAKE_CLUSTER", "", "ClickHouse cluster: ON CLUSTER DDL, replicated tables, sharding"
    )
    insert_quorum: int = _setting(
        "UPTAKE_INSERT_QUORUM", 0, "replicas that must confirm an insert (cluster; 0: off)"
    )
    async_insert: bool = _setting(
        "UPTAKE_ASYNC_INSERT", False, "server-side insert batching (async_insert, waited for)"
    )
    aggregate_retention_days: int = _setting(
        "UPTAKE_AGGREGATE_RETENTION_DAYS", 1096, "KPI aggregates kept this long (3 years)"
    )

    api_keys_file: str = _setting(
        "UPTAKE_API_KEYS_FILE", "", "API keys file (hashed, scoped to tools); required unless dev"
    )
    rate_limit_events_per_second: float = _setting(
        "UPTAKE_RATE_LIMIT_EVENTS_PER_SECOND", 0.0, "events per second per API key (0: no limit)"
    )
    max_inflight_bytes: int = _setting(
        "UPTAKE_MAX_INFLIGHT_BYTES", 32 * 1024 * 1024, "request bytes in flight before UNAVAILABLE"
    )
    max_inflight_events: int = _setting(
        "UPTAKE_MAX_INFLIGHT_EVENTS", 100_000, "events in flight before UNAVAILABLE"
    )
    tls_cert_file: str = _setting("UPTAKE_TLS_CERT_FILE", "", "gRPC TLS certificate chain (PEM)")
    tls_key_file: str = _setting("UPTAKE_TLS_KEY_FILE", "", "gRPC TLS private key (PEM)")
    tls_client_ca_file: str = _setting(
        "UPTAKE_TLS_CLIENT_CA_FILE", "", "CA of client certificates: mutual TLS for gRPC"
    )
    metrics_tls_cert_file: str = _setting(
        "UPTAKE_METRICS_TLS_CERT_FILE", "", "metrics endpoint TLS certificate chain (PEM)"
    )
    metrics_tls_key_file: str = _setting(
        "UPTAKE_METRICS_TLS_KEY_FILE", "", "metrics endpoint TLS private key (PEM)"
    )
    metrics_tls_client_ca_file: str = _setting(
        "UPTAKE_METRICS_TLS_CLIENT_CA_FILE", "", "CA of scraper certificates: mutual TLS"
    )
    metrics_basic_auth_file: str = _setting(
        "UPTAKE_METRICS_BASIC_AUTH_FILE", "", "user:password lines for the metrics endpoint"
    )
    tracing: str = _setting(
        "UPTAKE_TRACING",
        "off",
        "trace export: off, otlp or console; unset: as the OTEL_* variables ask",
    )

    def __post_init__(self) -> None:
        _check_security(self)
        _check_address(self, "grpc_listen")
        _check_address(self, "metrics_listen")
        for name in (
            "max_message_bytes",
            "max_events_per_request",
            "retention_days",
            "failed_retention_days",
            "commit_max_rows",
            "max_pending_events",
            "grpc_workers",
            "rollup_interval_ms",
            "store_connect_timeout_seconds",
            "store_query_timeout_seconds",
            "aggregate_retention_days",
        ):
            _check(self, name, getattr(self, name) >= 1, "must be at least 1")
        for name in (
            "max_clock_skew_seconds",
            "commit_max_delay_ms",
            "memory_trim_interval_ms",
            "code_unmap_interval_seconds",
            "shutdown_delay_seconds",
            "shutdown_grace_seconds",
        ):
            _check(self, name, getattr(self, name) >= 0, "must not be negative")
        _check(
            self,
            "commit_writers",
            1 <= self.commit_writers <= MAX_COMMIT_WRITERS,
            f"must be 1 to {MAX_COMMIT_WRITERS}",
        )
        _check(self, "health_interval_seconds", self.health_interval_seconds > 0, "must be > 0")
        _check(self, "kpi_refresh_seconds", self.kpi_refresh_seconds > 0, "must be > 0")
        _check(self, "activity_window_days", self.activity_window_days >= 1, "must be at least 1")
        for name in ("max_org_units_per_tool", "max_unregistered_tools", "max_activities"):
            _check(self, name, getattr(self, name) >= 1, "must be at least 1")
        _check(
            self,
            "min_group_size",
            self.min_group_size >= MIN_GROUP_SIZE_FLOOR,
            f"must be at least {MIN_GROUP_SIZE_FLOOR}: smaller groups could identify people",
        )
        _check(self, "log_format", self.log_format in ("text", "json"), "must be text or json")
        _check(self, "tracing", self.tracing in TRACE_EXPORTERS, "must be off, otlp or console")
        _check(
            self,
            "log_level",
            self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "must be DEBUG, INFO, WARNING or ERROR",
        )
        _check(
            self,
            "store_dsn",
            self.store_dsn == "" or self.store_dsn.split("://", 1)[0] in ("chdb", "http", "https"),
            f"must start with chdb://, http:// or https://, got {self.store_dsn!r}",
        )
        _check_storage(self)

    @property
    def data_path(self) -> Path:
        """Return the data directory as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def effective_store_dsn(self) -> str:
        """Return the store DSN, defaulting to the embedded engine under the data directory."""
        if self.store_dsn:
            return self.store_dsn
        return f"chdb://{self.data_path / 'store'}"

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


def env_name(name: str) -> str:
    """Return the environment variable of a setting."""
    return str(_FIELDS[name].metadata["env"])


def settings_table() -> list[tuple[str, str, str, str]]:
    """Return (setting, environment variable, default, meaning) for every setting."""
    return [
        (f.name, f.metadata["env"], repr(f.default), f.metadata["doc"])
        for f in dataclasses.fields(Settings)
    ]


def load_settings(
    overrides: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from explicit values, else UPTAKE_* variables, else defaults."""
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, f in _FIELDS.items():
        if name in overrides:
            values[name] = overrides[name]
            continue
        raw = environ.get(f.metadata["env"])
        if raw is not None and raw != "":
            values[name] = _parse(name, raw, type(f.default))
    if "tracing" not in values:
        values["tracing"] = tracing_from_otel(environ, setting=env_name("tracing"))
    settings = Settings(**values)
    if settings.tracing == "otlp":
        check_otlp_protocol(environ)
    return settings


def _parse(name: str, raw: str, kind: type) -> Any:
    parsers: dict[type, Callable[[str], Any]] = {
        bool: _parse_bool,
        int: lambda s: int(s.replace("_", "")),
        float: float,
        str: str,
    }
    try:
        return parsers[kind](raw.strip())
    except ValueError:
        raise ConfigError(
            f"{env_name(name)}={raw!r} is not a valid {kind.__name__} (setting {name})"
        ) from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _check(settings: Settings, name: str, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigError(
            f"setting {name} ({env_name(name)}) {problem}; got {getattr(settings, name)!r}"
        )


def _check_storage(settings: Settings) -> None:
    _check(
        settings,
        "cluster",
        settings.cluster == "" or _CLUSTER_NAME.fullmatch(settings.cluster) is not None,
        "must be a cluster name of letters, digits, _ . - or a {macro}",
    )
    _check(settings, "insert_quorum", settings.insert_quorum >= 0, "must not be negative")
    _check(
        settings,
        "insert_quorum",
        settings.insert_quorum == 0 or settings.cluster != "",
        f"needs a replicated cluster ({env_name('cluster')})",
    )
    _check(
        settings,
        "aggregate_retention_days",
        settings.aggregate_retention_days >= settings.retention_days,
        f"must be at least the raw event retention ({settings.retention_days} days)",
    )


def _check_security(settings: Settings) -> None:
    for name in ("max_inflight_bytes", "max_inflight_events"):
        _check(settings, name, getattr(settings, name) >= 1, "must be at least 1")
    _check(
        settings,
        "rate_limit_events_per_second",
        settings.rate_limit_events_per_second >= 0,
        "must not be negative (0 turns the limit off)",
    )


def _check_address(settings: Settings, name: str) -> None:
    host, sep, port = getattr(settings, name).rpartition(":")
    ok = bool(sep) and bool(host) and port.isdigit() and 0 <= int(port) <= 65535
    _check(settings, name, ok, "must be host:port with a port from 0 to 65535")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
