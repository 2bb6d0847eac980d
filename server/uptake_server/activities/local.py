"""Activities on the store itself: what the command line does when it holds the store."""

from __future__ import annotations

import datetime as dt

from uptake_server.activities.effect import Effect
from uptake_server.activities.measure import Measurer
from uptake_server.activities.model import Activity
from uptake_server.activities.report import report
from uptake_server.activities.store import open_activities
from uptake_server.config import Settings
from uptake_server.registry import load_registry
from uptake_server.store import ClickHouseStore, schema_context


class LocalActivities:
    """Add, list, remove and report activities in an open store (recorded as source "cli")."""

    def __init__(self, settings: Settings, store: ClickHouseStore) -> None:
        store.migrate(schema_context(settings))
        registry = load_registry(settings.registry_file or None)
        self._store = open_activities(store, registry=registry, source=settings.registry_file)
        self._measurer = Measurer(store, registry=registry, k=settings.min_group_size)
        self.min_group_size = settings.min_group_size

    def add(self, draft: Activity) -> Activity:
        """Validate and record an activity."""
        return self._store.add(draft, source="cli")

    def find(self, *, tool: str | None, limit: int) -> list[Activity]:
        """Return activities, newest start first."""
        return self._store.find(tool=tool or None, limit=limit)

    def remove(self, activity_id: str) -> Activity:
        """Remove an activity."""
        return self._store.remove(activity_id)

    def report(self, *, tool: str, activity_id: str) -> list[Effect]:
        """Return the effects now."""
        now = dt.datetime.now(dt.UTC)
        return report(self._store, self._measurer, now=now, tool=tool, activity_id=activity_id)
