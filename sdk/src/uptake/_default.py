"""A module-level default client: uptake.init(), uptake.track(), uptake.flush()."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from uptake._client import Client

_lock = threading.Lock()
_default: Client | None = None


def init(target: str | None = None, **options: Any) -> Client:
    """Create the default client (closing a previous one) and return it.

    Takes the same arguments as Client.
    """
    global _default
    client = Client(target, **options)
    with _lock:
        previous, _default = _default, client
    if previous is not None:
        previous.close()
    return client


def _client() -> Client:
    global _default
    with _lock:
        if _default is None:
            # Not initialised: configure from UPTAKE_* variables, as init() would.
            _default = Client()
        return _default


def track(
    user_id: str,
    action: str,
    *,
    tool: str,
    org_unit: str | None = None,
    feature: str | None = None,
    properties: Mapping[str, str] | None = None,
    timestamp: datetime | None = None,
) -> None:
    """Track an event with the default client (see Client.track)."""
    client = _default if _default is not None else _client()
    client.track(
        user_id,
        action,
        tool=tool,
        org_unit=org_unit,
        feature=feature,
        properties=properties,
        timestamp=timestamp,
    )


def flush(timeout: float = 5.0) -> bool:
    """Flush the default client (see Client.flush); True if there is none."""
    client = _default
    return client.flush(timeout) if client is not None else True
