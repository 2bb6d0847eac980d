"""Event storage in ClickHouse (embedded chDB or a server), behind one implementation."""

from __future__ import annotations

from pathlib import Path

from uptake_server.config import Settings, env_name
from uptake_server.errors import ConfigError
from uptake_server.store.clickhouse import ClickHouseStore, StoreOptions
from uptake_server.store.dsn import parse_dsn
from uptake_server.store.filesystem import warn_if_unjournaled
from uptake_server.store.schema import SchemaContext

__all__ = ["ClickHouseStore", "SchemaContext", "StoreOptions", "open_store", "schema_context"]


def open_store(settings: Settings) -> ClickHouseStore:
    """Open the store the settings name (the embedded data directory is locked)."""
    target, password = parse_dsn(settings.effective_store_dsn)
    # The file wins over the variable, the variable over a password in the DSN.
    if settings.store_password_file:
        password = _read(settings.store_password_file, "store_password_file")
    elif settings.store_password:
        password = settings.store_password
    if settings.cluster and target.engine == "chdb":
        raise ConfigError(
            f"{env_name('cluster')}={settings.cluster} needs a ClickHouse server DSN, "
            "not the embedded chdb:// store"
        )
    if settings.store_ca_file:
        if not target.secure:
            raise ConfigError(
                f"{env_name('store_ca_file')} is set but the store DSN is not https://"
            )
        if not Path(settings.store_ca_file).is_file():
            raise ConfigError(
                f"the store CA file {settings.store_ca_file} ({env_name('store_ca_file')}) "
                "does not exist"
            )
    options = StoreOptions(
        password=password,
        ca_file=settings.store_ca_file or None,
        connect_timeout_seconds=settings.store_connect_timeout_seconds,
        query_timeout_seconds=settings.store_query_timeout_seconds,
        cluster=settings.cluster,
        insert_quorum=settings.insert_quorum,
        async_insert=settings.async_insert,
    )
    store = ClickHouseStore(target, options=options)
    if target.path is not None:
        warn_if_unjournaled(target.path)
    return store


def schema_context(settings: Settings) -> SchemaContext:
    """Return the schema values the settings choose."""
    target, _ = parse_dsn(settings.effective_store_dsn)
    return SchemaContext(
        retention_days=settings.retention_days,
        failed_retention_days=settings.failed_retention_days,
        aggregate_retention_days=settings.aggregate_retention_days,
        cluster=settings.cluster,
        database=target.database,
        rollup=target.engine == "chdb",
    )


def _read(path_text: str, setting: str) -> str:
    path = Path(path_text)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the store password file {path} ({env_name(setting)}): {exc.strerror}"
        ) from None
