"""The EventStore protocol: what the service needs of any event store."""

from __future__ import annotations

from typing import Any, Protocol

from uptake_server.model import EventColumns, FailedColumns
from uptake_server.store.memory import CodeRelease
from uptake_server.store.schema import SchemaContext


class EventStore(Protocol):
    """Stores events and failed events; answers read queries for KPIs and inspection."""

    def migrate(self, ctx: SchemaContext) -> list[str]:
        """Apply pending schema migrations; return the names applied."""
        ...

    def recover(self) -> int:
        """Finish what an earlier process committed and did not roll up; return its events."""
        ...

    def insert(
        self, events: EventColumns, failed: FailedColumns, *, lookup: list[bytes] | None = None
    ) -> set[bytes]:
        """Store the rows (events once per id); return the event ids stored before.

        Only the ids in `lookup` are checked against stored events (None: all).
        """
        ...

    def roll_up(self) -> int:
        """Bring derived aggregates up to the newest insert; return events rolled up."""
        ...

    @property
    def rollup_pending(self) -> int:
        """Return the events committed and not yet rolled up."""
        ...

    def trim_memory(self, *, code: CodeRelease = "") -> int:
        """Give back memory the store's engine holds without using it: freed pages, and
        with `code` its code pages too ("evict": out of the page cache as well, for the
        start-up code; "unmap": this process's mappings only); return the code bytes."""
        ...

    def describe(self) -> str:
        """Return where the store is, fit for logs (never a password)."""
        ...

    def ping(self) -> bool:
        """Return whether the store answers now."""
        ...

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query and return its rows."""
        ...

    def close(self) -> None:
        """Release every connection (and the embedded data directory)."""
        ...
