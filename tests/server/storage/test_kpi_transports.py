"""The KPI SQL on every transport: the refresher's rows equal the pure-Python reference."""

from __future__ import annotations

import random

from tests.server.kpi.conftest import KpiStore
from tests.server.kpi.reference import DAY_MS, Ev
from tests.server.kpi.test_reference import NOW_MS, check
from uptake_server.kpi.reader import KpiReader
from uptake_server.store import ClickHouseStore


class KpiStoreOn(KpiStore):
    """The KPI tests' store helper, on the storage suite's transport."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.reader = KpiReader(store)


def history(seed: int, count: int) -> list[Ev]:
    """Return a reproducible spread of events over the last 40 days."""
    rng = random.Random(seed)
    return [
        Ev(
            rng.choice(["wiki", "chat"]),
            rng.choice(["view", "edit"]),
            rng.randrange(12).to_bytes(16, "big"),
            rng.choice(["a", "b", ""]),
            rng.choice(["", "search", "export"]),
            NOW_MS - rng.randrange(40 * DAY_MS),
        )
        for _ in range(count)
    ]


def test_kpi_rows_match_the_reference(store: ClickHouseStore) -> None:
    kpi_store = KpiStoreOn(store)
    for seed in (6, 7):
        check(kpi_store, history(seed, 250))
