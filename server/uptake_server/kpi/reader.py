"""The store as the KPI side sees it: its own client role, queries with settings, errors mapped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from uptake_server.errors import StoreError, StoreUnavailable
from uptake_server.store import ClickHouseStore

ROLE = "kpi"


class KpiReader:
    """Run KPI and backfill statements on the store's `kpi` client."""

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store
        self._known: dict[str, bool] = {}

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Return the rows of a query (after rolling the aggregates up to the newest insert)."""
        self._store.roll_up()
        client = self._store.client(ROLE)
        return list(
            self._run(
                lambda: client.query(sql, parameters=parameters, settings=settings).result_rows
            )
        )

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (after a roll-up, like `query`)."""
        self._store.roll_up()
        client = self._store.client(ROLE)
        self._run(lambda: client.command(sql, parameters=parameters))

    @property
    def temporary_tables(self) -> bool:
        """Tell whether temporary tables outlive a statement (the embedded engine's session)."""
        return self._store.target.engine == "chdb"

    def supports_setting(self, name: str) -> bool:
        """Tell whether the engine knows a setting."""
        if name not in self._known:
            rows = self.query(
                "SELECT count() FROM system.settings WHERE name = {name:String}", {"name": name}
            )
            self._known[name] = bool(rows and rows[0][0])
        return self._known[name]

    def _run(self, call: Callable[[], Any]) -> Any:
        target = self._store.describe()
        try:
            return call()
        except OperationalError as exc:
            raise StoreUnavailable(f"{target} is unavailable: {exc}") from exc
        except DatabaseError as exc:
            raise StoreError(f"{target} failed: {exc}") from exc
