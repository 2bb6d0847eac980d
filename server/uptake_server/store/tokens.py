"""Insert deduplication tokens: a retried block of rows is dropped if it was committed.

The group committer merges requests, so a token per request would never match: the
block that is retried is a merged one. The token is a hash of the block's sorted
event ids, so it identifies exactly the events being written, in any order and at
any receive time. A retry of the same block (ours, or clickhouse-connect's own
replay after the server closed the connection) is dropped by the server if the
first attempt was in fact committed. Requests retried later by SDKs are regrouped
differently; the pre-insert lookup in ``event_ids`` catches those.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from uptake_server.model import FailedColumns


def event_token(event_ids: Iterable[bytes]) -> str:
    """Return the deduplication token of a block of events: a hash of its sorted ids."""
    digest = hashlib.sha256()
    for event_id in sorted(event_ids):
        digest.update(event_id)
    return f"uptake-events-{digest.hexdigest()}"


def failed_token(failed: FailedColumns) -> str:
    """Return the deduplication token of a block of failed events: a hash of its rows."""
    digest = hashlib.sha256()
    for column in failed.columns():
        digest.update(repr(column).encode())
    return f"uptake-failed-{digest.hexdigest()}"
