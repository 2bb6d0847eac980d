"""Event storage in ClickHouse (embedded chDB or a server), behind one implementation."""

from __future__ import annotations

from pathlib import Path

from uptake_server.config import Settings, env_name
from uptake_server.errors import ConfigError
from uptake_server.store.clickhouse import ClickHouseStore
from uptake_server.store.dsn import parse_dsn
from uptake_server.store.schema import SchemaContext

__all__ = ["ClickHouseStore", "SchemaContext", "open_store", "schema_context"]


def open_store(settings: Settings) -> ClickHouseStore:
    """Open the store the settings name (the embedded data directory is locked)."""
    target, password = parse_dsn(settings.effective_store_dsn)
    if settings.store_password_file:
        path = Path(settings.store_password_file)
        try:
            password = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the store password file {path} "
                f"({env_name('store_password_file')}): {exc.strerror}"
            ) from None
    return ClickHouseStore(target, password=password)


def schema_context(settings: Settings) -> SchemaContext:
    """Return the schema values the settings choose."""
    return SchemaContext(
        retention_days=settings.retention_days,
        failed_retention_days=settings.failed_retention_days,
    )
