"""What a ClickHouse failure means for the caller, and how the store retries one.

A failure that says "not now" (overload, timeouts, network trouble, replicas or
Keeper away, a commit of unknown outcome) becomes StoreUnavailable, which inserts
retry a bounded number of times and clients are told to retry later; anything else
is a StoreError. Retrying an insert is safe: each carries an
``insert_deduplication_token`` (store/tokens.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from uptake_server.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_CODES = frozenset(
    {3, 159, 202, 203, 209, 210, 241, 242, 252, 285, 286, 319, 425, 999, 1000}
)
RETRY_BASE_SECONDS = 0.2


def classify(exc: ClickHouseError, context: str) -> StoreError:
    """Return the store error a ClickHouse failure stands for."""
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationalError) or code in TRANSIENT_CODES:
        return StoreUnavailable(f"{context} (unavailable): {exc}")
    return StoreError(f"{context}: {exc}")


def classified(call: Callable[[], T], context: str) -> T:
    """Return what `call` returns; raise its ClickHouse failure as a store error."""
    try:
        return call()
    except (OperationalError, DatabaseError) as exc:
        raise classify(exc, context) from exc


def retrying(
    call: Callable[[], T], *, what: str, context: str, attempts: int, within_seconds: float
) -> T:
    """Return what `call` returns, retrying while the store is unavailable.

    At most `attempts` calls, none started after `within_seconds`; the delay
    doubles from RETRY_BASE_SECONDS.
    """
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return classified(call, context)
        except StoreUnavailable as exc:
            spent = time.monotonic() - started
            if attempt >= attempts or spent > within_seconds:
                raise
            delay = RETRY_BASE_SECONDS * 2 ** (attempt - 1)
            log.warning(
                "%s failed (attempt %d of %d, retrying in %.1f s): %s",
                what,
                attempt,
                attempts,
                delay,
                exc,
            )
            time.sleep(delay)
            attempt += 1
