"""The limit of `make bench`: the store's own write path in bulk, from one process."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.load import ACTIONS, ORG_UNITS


def direct_insert_rate(events: int, work: Path) -> float:
    """Return events/s of the store's own write path, in bulk, from one process.

    The same kind of rows as the SDK clients send, inserted through the store in
    50,000-row inserts (sequence numbers, deduplication token) and rolled up into the
    duplicate filter and the KPI aggregates: all the work the store does per event,
    with none of the gRPC, validation or acknowledgement around it.
    """
    from uptake_server.model import EventColumns, FailedColumns
    from uptake_server.store import ClickHouseStore, SchemaContext
    from uptake_server.store.dsn import parse_dsn

    target, _ = parse_dsn(f"chdb://{tempfile.mkdtemp(dir=work)}/store")
    store = ClickHouseStore(target)
    store.migrate(SchemaContext())
    now = int(time.time() * 1000)
    chunk = 50_000
    batches = [
        EventColumns(
            event_id=[os.urandom(16) for _ in range(chunk)],
            occurred_at=[now - i for i in range(chunk)],
            received_at=[now] * chunk,
            tool=["wiki" if i % 3 else "chat" for i in range(chunk)],
            action=[ACTIONS[i % len(ACTIONS)] for i in range(chunk)],
            user_id=[(i % 20_000).to_bytes(16, "big") for i in range(chunk)],
            org_unit=[ORG_UNITS[i % len(ORG_UNITS)] for i in range(chunk)],
            feature=["editor"] * chunk,
            client=["uptake-python/0.1.0"] * chunk,
            property_keys=[[] for _ in range(chunk)],
            property_values=[[] for _ in range(chunk)],
        )
        for _ in range(max(events // chunk, 1))
    ]
    started = time.perf_counter()
    for columns in batches:
        store.insert(columns, FailedColumns(), lookup=[])
    store.roll_up()
    rate = len(batches) * chunk / (time.perf_counter() - started)
    store.close()
    return rate
