"""Parse store DSNs: ``chdb:///abs/path`` or ``http(s)://user@host:port/database``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from uptake_server.errors import ConfigError

DEFAULT_HTTP_PORT = 8123
DEFAULT_HTTPS_PORT = 8443


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTarget:
    """Where the store lives; `path` for the embedded engine, host and port otherwise."""

    engine: str  # "chdb" or "http"
    path: Path | None = None
    host: str = ""
    port: int = 0
    secure: bool = False
    username: str = "default"
    database: str = "default"

    def describe(self) -> str:
        """Return a log-safe description (never a password)."""
        if self.engine == "chdb":
            return f"embedded ClickHouse (chDB) at {self.path}"
        scheme = "https" if self.secure else "http"
        return f"ClickHouse at {scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


def parse_dsn(dsn: str) -> tuple[StoreTarget, str | None]:
    """Return the target and the password embedded in the DSN, if any."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ConfigError(f"store DSN {_redact(dsn)!r} has no scheme (chdb://, http://, https://)")
    if scheme == "chdb":
        path = Path(unquote(rest)).expanduser()
        if not rest:
            raise ConfigError("store DSN chdb:// needs a path, for example chdb:///srv/uptake")
        return StoreTarget(engine="chdb", path=path.resolve()), None
    if scheme not in ("http", "https"):
        raise ConfigError(f"store DSN scheme {scheme!r} is not chdb, http or https")
    parts = urlsplit(dsn)
    if not parts.hostname:
        raise ConfigError(f"store DSN {_redact(dsn)!r} has no host")
    secure = scheme == "https"
    try:
        port = parts.port or (DEFAULT_HTTPS_PORT if secure else DEFAULT_HTTP_PORT)
    except ValueError:
        raise ConfigError(f"store DSN {_redact(dsn)!r} has an invalid port") from None
    database = parts.path.strip("/") or "default"
    target = StoreTarget(
        engine="http",
        host=parts.hostname,
        port=port,
        secure=secure,
        username=unquote(parts.username) if parts.username else "default",
        database=database,
    )
    return target, unquote(parts.password) if parts.password else None


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@")
    return dsn


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreOptions:
    """How the store talks to ClickHouse; the settings of the same names choose them."""

    password: str | None = None
    ca_file: str | None = None
    connect_timeout_seconds: int = 5
    query_timeout_seconds: int = 20
    cluster: str = ""
    insert_quorum: int = 0
    async_insert: bool = False
    insert_attempts: int = 3

    def insert_settings(self, *, embedded: bool = False) -> dict[str, Any]:
        """Return the ClickHouse settings every insert carries under these options."""
        settings: dict[str, Any] = {}
        if embedded:
            # One thread for an insert of a request's rows: 0.5-1 ms less per insert
            # and 1 ms less p50 acknowledgement at 77,000 events/s, throughput the same
            # (docs/performance.md). A server plans its own inserts.
            settings |= {"max_threads": 1, "input_format_parallel_parsing": 0}
        if self.async_insert:
            # Batched by the server, but still acknowledged only once written.
            settings |= {"async_insert": 1, "wait_for_async_insert": 1}
            settings["async_insert_deduplicate"] = 1
        if self.cluster:
            # Into the shards before the insert returns, not queued on this node.
            settings["distributed_foreground_insert"] = 1
        if self.insert_quorum:
            settings["insert_quorum"] = self.insert_quorum
        return settings
