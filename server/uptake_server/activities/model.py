"""Adoption activities: the record, its limits and its validation (pure functions, no I/O).

What is known (registered tools, tools with events, org units seen) is passed in by
the caller, so validation reads nothing and every error names the offending field.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from uptake_server.errors import UptakeError
from uptake_server.registry import ACTIVITY_KINDS

KINDS = ACTIVITY_KINDS
SOURCES = ("api", "cli", "registry")
MAX_ID_CHARS = 64
MAX_TITLE_CHARS = 200
MAX_LINK_CHARS = 2048
MAX_ORG_UNITS = 50
MAX_ORG_UNIT_CHARS = 128
MAX_DURATION_DAYS = 92
MAX_FUTURE_DAYS = 366
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
DAY_MS = 86_400_000

_SLUG = re.compile(r"[a-z][a-z0-9_.\-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINK = re.compile(r"https?://[^\s/?#]+[^\s]*")


class ActivityError(UptakeError):
    """An activity request that cannot be done; `field` names the offending field."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class InvalidActivity(ActivityError):
    """An activity field is malformed, out of its limits or names something unknown."""


class ActivityExists(ActivityError):
    """An activity with that id is already recorded."""


class ActivityNotFound(ActivityError):
    """No activity has that id."""


class ActivityLocked(ActivityError):
    """The activity belongs to the tool registry file and is changed there."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Activity:
    """One recorded adoption activity; `org_units` empty means every org unit."""

    id: str
    tool: str
    kind: str
    title: str
    start_ms: int
    end_ms: int
    org_units: tuple[str, ...] = ()
    link: str = ""
    source: str = "api"
    recorded_ms: int = 0

    @property
    def all_units(self) -> bool:
        """Tell whether the activity targeted every org unit."""
        return not self.org_units

    @property
    def start_day(self) -> dt.date:
        """Return the UTC day the activity began."""
        return utc_day(self.start_ms)

    @property
    def end_day(self) -> dt.date:
        """Return the UTC day the activity ended."""
        return utc_day(self.end_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What activities may refer to: tools and org units the server knows."""

    tools: Collection[str]
    org_units: Collection[str]


def utc_day(ms: int) -> dt.date:
    """Return the UTC date of a millisecond timestamp."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def slug_problem(value: str, *, what: str) -> str | None:
    """Return why a value is not a lowercase slug of at most 64 characters, or None."""
    if not value:
        return f"{what} is missing"
    if len(value) > MAX_ID_CHARS:
        return f"{what} is {len(value)} characters long; at most {MAX_ID_CHARS} are allowed"
    if not _SLUG.fullmatch(value):
        return (
            f"{what} must be a lowercase slug (a letter, then a-z, 0-9, '_', '-', '.'), "
            f"got {value[:MAX_ID_CHARS]!r}"
        )
    return None


def validate(activity: Activity, *, known: Known, now_ms: int) -> Activity:
    """Return the activity with org units sorted; raise InvalidActivity naming the field."""
    if activity.id:
        _require(slug_problem(activity.id, what="id"), "id")
    _require(slug_problem(activity.tool, what="tool"), "tool")
    if activity.tool not in known.tools:
        raise InvalidActivity(
            f"unknown tool {activity.tool!r}: it is not in the tool registry and no events of "
            "it are stored",
            field="tool",
        )
    if activity.kind not in KINDS:
        raise InvalidActivity(
            f"kind must be one of {', '.join(KINDS)}, got {activity.kind[:32]!r}", field="kind"
        )
    units = _org_units(activity.org_units, known=known)
    _check_times(activity, now_ms=now_ms)
    _check_text(activity.title, field="title", limit=MAX_TITLE_CHARS, required=True)
    _check_text(activity.link, field="link", limit=MAX_LINK_CHARS, required=False)
    if activity.link and not _LINK.fullmatch(activity.link):
        raise InvalidActivity(
            f"link must be an http:// or https:// URL, got {activity.link[:80]!r}", field="link"
        )
    if activity.source not in SOURCES:
        raise InvalidActivity(f"source must be one of {', '.join(SOURCES)}", field="source")
    return Activity(
        id=activity.id,
        tool=activity.tool,
        kind=activity.kind,
        title=activity.title,
        start_ms=activity.start_ms,
        end_ms=activity.end_ms,
        org_units=units,
        link=activity.link,
        source=activity.source,
        recorded_ms=activity.recorded_ms,
    )


def _require(problem: str | None, field: str) -> None:
    if problem is not None:
        raise InvalidActivity(problem, field=field)


def _org_units(units: Sequence[str], *, known: Known) -> tuple[str, ...]:
    if len(units) > MAX_ORG_UNITS:
        raise InvalidActivity(
            f"{len(units)} org units given; at most {MAX_ORG_UNITS} are allowed "
            "(give none to target every org unit)",
            field="org_units",
        )
    seen: set[str] = set()
    for index, unit in enumerate(units):
        where = f"org_units[{index}]"
        if not unit:
            raise InvalidActivity(f"{where} is empty", field=where)
        if len(unit) > MAX_ORG_UNIT_CHARS:
            raise InvalidActivity(
                f"{where} is {len(unit)} characters long; at most {MAX_ORG_UNIT_CHARS} are allowed",
                field=where,
            )
        if _CONTROL.search(unit):
            raise InvalidActivity(f"{where} contains control characters", field=where)
        if unit in seen:
            raise InvalidActivity(f"{where}: org unit {unit!r} is given twice", field=where)
        if unit not in known.org_units:
            raise InvalidActivity(
                f"{where}: unknown org unit {unit!r}: no stored event has it and the tool "
                "registry does not list it under org_units",
                field=where,
            )
        seen.add(unit)
    return tuple(sorted(units))


def _check_times(activity: Activity, *, now_ms: int) -> None:
    start, end = activity.start_ms, activity.end_ms
    if start < EARLIEST_MS:
        raise InvalidActivity(
            f"start_ms {start} is before 2000-01-01 (milliseconds since the Unix epoch expected)",
            field="start_ms",
        )
    if end < start:
        raise InvalidActivity(f"end ({_iso(end)}) is before start ({_iso(start)})", field="end_ms")
    if end - start > MAX_DURATION_DAYS * DAY_MS:
        raise InvalidActivity(
            f"the activity lasts {(end - start) / DAY_MS:.1f} days; at most "
            f"{MAX_DURATION_DAYS} days are allowed (record a long campaign as several "
            "activities)",
            field="end_ms",
        )
    if end > now_ms + MAX_FUTURE_DAYS * DAY_MS:
        raise InvalidActivity(
            f"end ({_iso(end)}) is more than {MAX_FUTURE_DAYS} days in the future",
            field="end_ms",
        )


def _check_text(value: str, *, field: str, limit: int, required: bool) -> None:
    if required and not value.strip():
        raise InvalidActivity(f"{field} is missing", field=field)
    if len(value) > limit:
        raise InvalidActivity(
            f"{field} is {len(value)} characters long; at most {limit} are allowed", field=field
        )
    if _CONTROL.search(value):
        raise InvalidActivity(f"{field} contains control characters", field=field)


def _iso(ms: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def make_id(activity: Activity, *, taken: Collection[str]) -> str:
    """Return an id for an activity given none: kind, tool and start day, unique among `taken`."""
    base = f"{activity.kind}-{activity.tool}-{activity.start_day.isoformat()}"
    base = base[: MAX_ID_CHARS - 4]
    candidate, number = base, 2
    while candidate in taken:
        candidate = f"{base}-{number}"
        number += 1
    return candidate
