"""Activities in the store: the `activities` table, what they may refer to, the registry's share.

Every write is a new row version (ReplacingMergeTree by `version`); a removal writes
a tombstone. Reads take the newest version of each id (`LIMIT 1 BY id`), which is
also right on a cluster, where versions of one id may sit on different shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from uptake_server.activities.model import (
    Activity,
    ActivityExists,
    ActivityLocked,
    ActivityNotFound,
    InvalidActivity,
    Known,
    make_id,
    validate,
)
from uptake_server.errors import ConfigError
from uptake_server.registry import ActivitySpec, Registry
from uptake_server.store.schema import ACTIVITY_COLUMNS

log = logging.getLogger(__name__)

TABLE = "activities"
_NAMES = [name for name, _ in ACTIVITY_COLUMNS]
_TYPES = [kind for _, kind in ACTIVITY_COLUMNS]
_SELECT = """
SELECT id, tool, kind, title, link, org_units, toUnixTimestamp64Milli(start_at),
       toUnixTimestamp64Milli(end_at), source, toUnixTimestamp64Milli(recorded_at)
FROM (SELECT * FROM activities ORDER BY id, version DESC LIMIT 1 BY id)
WHERE deleted = 0"""


class Reads(Protocol):
    """The store call reading activities needs."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Any]: ...


class ActivityBackend(Reads, Protocol):
    """The store calls activities need (the ClickHouse store has them)."""

    def insert_columns(
        self,
        table: str,
        columns: list[list[Any]],
        *,
        names: list[str],
        types: list[str],
        token: str,
    ) -> None: ...

    def roll_up(self) -> int:
        """Bring the KPI aggregates up to the newest insert."""
        ...


def _clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ActivityStore:
    """Add, list and remove activities; tell which tools and org units they may name."""

    def __init__(
        self,
        backend: ActivityBackend,
        *,
        registry: Registry,
        reader: Reads | None = None,
        clock_ms: Callable[[], int] = _clock_ms,
    ) -> None:
        self._backend = backend
        self._reads: Reads = reader if reader is not None else backend
        self.registry = registry
        self._clock_ms = clock_ms

    def find(self, *, tool: str | None = None, limit: int | None = None) -> list[Activity]:
        """Return the activities (of one tool), newest start first, then by id."""
        sql = _SELECT + (" AND tool = {tool:String}" if tool else "")
        sql += " ORDER BY start_at DESC, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._reads.query(sql, {"tool": tool} if tool else None)
        return [_activity(row) for row in rows]

    def get(self, activity_id: str) -> Activity | None:
        """Return one activity, or None."""
        rows = self._reads.query(_SELECT + " AND id = {id:String}", {"id": activity_id})
        return _activity(rows[0]) if rows else None

    def known(self) -> Known:
        """Return the tools and org units activities may name: registry and stored events."""
        self._backend.roll_up()
        tools = {str(r[0]) for r in self._reads.query("SELECT DISTINCT tool FROM kpi_first_seen")}
        units = {
            str(r[0])
            for r in self._reads.query("SELECT DISTINCT org_unit FROM kpi_user_days")
            if r[0]
        }
        return Known(
            tools=tools | set(self.registry.tools), org_units=units | set(self.registry.org_units)
        )

    def add(self, draft: Activity, *, source: str) -> Activity:
        """Validate and store a new activity; raise InvalidActivity or ActivityExists."""
        now = self._clock_ms()
        draft = dataclasses.replace(draft, source=source, recorded_ms=now)
        activity = validate(draft, known=self.known(), now_ms=now)
        taken = {a.id for a in self.find()}
        if not activity.id:
            activity = dataclasses.replace(activity, id=make_id(activity, taken=taken))
        elif activity.id in taken:
            raise ActivityExists(
                f"an activity with id {activity.id!r} exists; remove it first or choose another id",
                field="id",
            )
        self._write(activity, deleted=False)
        log.info("activity %s recorded (%s, %s)", activity.id, activity.tool, source)
        return activity

    def remove(self, activity_id: str, *, registry_sync: bool = False) -> Activity:
        """Remove an activity; raise ActivityNotFound, or ActivityLocked for registry ones."""
        activity = self.get(activity_id)
        if activity is None:
            raise ActivityNotFound(f"no activity with id {activity_id[:64]!r}", field="id")
        if activity.source == "registry" and not registry_sync:
            raise ActivityLocked(
                f"activity {activity.id!r} comes from the tool registry file; remove it there",
                field="id",
            )
        self._write(activity, deleted=True)
        log.info("activity %s removed", activity.id)
        return activity

    def sync_registry(self, *, source: str = "the tool registry") -> list[str]:
        """Make the stored registry activities those of the registry file; return the changes."""
        stored = {a.id: a for a in self.find()}
        declared = self.registry.activities
        changes = []
        known: Known | None = None
        now = self._clock_ms()
        for spec in declared:
            current = stored.get(spec.id)
            draft = from_spec(spec, recorded_ms=current.recorded_ms if current else now)
            if current is not None and _fields(current) == _fields(draft):
                continue
            known = known or self.known()
            try:
                activity = validate(draft, known=known, now_ms=now)
            except InvalidActivity as exc:
                raise ConfigError(
                    f"tool registry {source}: activity {spec.id!r} field "
                    f"{exc.field or '(activity)'}: {exc}"
                ) from None
            if current is not None and current.source != "registry":
                log.warning(
                    "activity %s from the tool registry replaces the one recorded by %s",
                    spec.id,
                    current.source,
                )
            self._write(activity, deleted=False)
            changes.append(f"recorded {spec.id}")
        names = {spec.id for spec in declared}
        for activity in stored.values():
            if activity.source == "registry" and activity.id not in names:
                self.remove(activity.id, registry_sync=True)
                changes.append(f"removed {activity.id}")
        return changes

    def _write(self, activity: Activity, *, deleted: bool) -> None:
        version = time.time_ns()
        row: list[Any] = [
            activity.id,
            version,
            int(deleted),
            activity.tool,
            activity.kind,
            activity.title,
            activity.link,
            list(activity.org_units),
            activity.start_ms,
            activity.end_ms,
            activity.source,
            activity.recorded_ms,
        ]
        token = hashlib.sha256(repr(row).encode()).hexdigest()
        self._backend.insert_columns(
            TABLE,
            [[value] for value in row],
            names=_NAMES,
            types=_TYPES,
            token=f"uptake-activity-{token}",
        )


def from_spec(spec: ActivitySpec, *, recorded_ms: int) -> Activity:
    """Return the activity a registry entry declares."""
    return Activity(
        id=spec.id,
        tool=spec.tool,
        kind=spec.kind,
        title=spec.title,
        start_ms=spec.start_ms,
        end_ms=spec.end_ms,
        org_units=tuple(sorted(spec.org_units)),
        link=spec.link,
        source="registry",
        recorded_ms=recorded_ms,
    )


def _fields(activity: Activity) -> dict[str, Any]:
    return dataclasses.asdict(activity)


def _activity(row: tuple[Any, ...]) -> Activity:
    activity_id, tool, kind, title, link, units, start, end, source, recorded = row
    return Activity(
        id=str(activity_id),
        tool=str(tool),
        kind=str(kind),
        title=str(title),
        link=str(link),
        org_units=tuple(units),
        start_ms=int(start),
        end_ms=int(end),
        source=str(source),
        recorded_ms=int(recorded),
    )


def open_activities(
    backend: ActivityBackend, *, registry: Registry, source: str = "the tool registry"
) -> ActivityStore:
    """Return the activity store with the registry's activities synced into it."""
    activities = ActivityStore(backend, registry=registry)
    changes = activities.sync_registry(source=source)
    if changes:
        log.info("activities of %s: %s", source, ", ".join(changes))
    return activities
