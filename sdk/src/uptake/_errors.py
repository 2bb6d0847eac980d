"""Exceptions of the Uptake SDK.

    UptakeError
    ├── ConfigurationError (also a ValueError)  an option or UPTAKE_* variable is invalid
    └── TransportError                          one send failed; carries the gRPC status

`Client.track()` never raises at run time; only programming errors (bad argument types
or values, with `strict=True`) raise the built-in `TypeError` and `ValueError`.
"""

from __future__ import annotations


class UptakeError(Exception):
    """Base class of every exception the SDK defines."""


class ConfigurationError(UptakeError, ValueError):
    """An option or an UPTAKE_* environment variable has an invalid value."""


class TransportError(UptakeError):
    """One send attempt failed with a gRPC status other than OK.

    `code` is the status code name (for example "UNAVAILABLE"); `retry_after` is the
    delay the server asked for in a google.rpc.RetryInfo detail, in seconds, if any.
    """

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
