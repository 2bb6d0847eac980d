"""Errors of the Uptake server.

UptakeError
├── ConfigError            a setting is missing or invalid (start-up fails, names the setting)
└── StoreError             the event store could not do what was asked
    ├── StoreLocked        the embedded data directory is in use by another process
    ├── StoreUnavailable   the store cannot be reached now; retry later
    └── StoreOverloaded    too many events wait for the store; retry later
"""

from __future__ import annotations


class UptakeError(Exception):
    """Base class of every error the server raises on purpose."""


class ConfigError(UptakeError):
    """A setting is missing or invalid."""


class StoreError(UptakeError):
    """The event store failed."""


class StoreLocked(StoreError):
    """The embedded store's data directory is held by another process."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the caller should retry after a delay."""

    def __init__(self, message: str, *, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StoreOverloaded(StoreUnavailable):
    """More events wait for the store than the configured bound."""
