"""The request id of the call being served: one per Ingest call, seen by every log line of it."""

from __future__ import annotations

import os
from contextvars import ContextVar, Token

_request_id: ContextVar[str | None] = ContextVar("uptake_request_id", default=None)


def current_request_id() -> str | None:
    """Return the request id of the call this thread serves, or None outside a call."""
    return _request_id.get()


def bind_request_id(request_id: str) -> Token[str | None]:
    """Make `request_id` the current one until `unbind_request_id(token)`."""
    return _request_id.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    """Restore the request id that was current before `bind_request_id`."""
    _request_id.reset(token)


def new_request_id() -> str:
    """Return a fresh random request id (16 hex digits)."""
    return os.urandom(8).hex()
