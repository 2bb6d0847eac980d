"""Validate incoming events: pure functions, no I/O.

Every limit lives in `Limits`. One bad event never costs the rest of its batch:
it becomes a `Rejection` (field, machine code, human reason) and a row of
`FailedColumns`, while the good events become columns for the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from uptake_server.ingest.columns import EventMessage, IncomingColumns, Row, from_events
from uptake_server.model import EventColumns, FailedColumns

MAX_SLUG_CHARS = 64
MAX_USER_ID_CHARS = 256
MAX_ORG_UNIT_CHARS = 128
MAX_CLIENT_CHARS = 64
MAX_PROPERTIES = 32
MAX_PROPERTY_VALUE_CHARS = 256
MAX_PROPERTIES_BYTES = 4096
MAX_BATCH_ID_CHARS = 64
EVENT_ID_BYTES = 16
# Strings copied into failed_events are cut to this many characters.
MAX_PAYLOAD_FIELD_CHARS = 512

# Rejection codes (a bounded set: they are Prometheus label values).
CODES = (
    "missing",
    "invalid_event_id",
    "invalid_slug",
    "too_long",
    "control_characters",
    "timestamp_future",
    "timestamp_too_old",
    "property_mismatch",
    "too_many_properties",
    "duplicate_property",
    "properties_too_large",
)

_SLUG = re.compile(r"[a-z][a-z0-9_.\-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Time limits of validation (the size limits are module constants)."""

    max_clock_skew_ms: int = 300_000
    retention_ms: int = 396 * _DAY_MS


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the event at `index` was not stored."""

    index: int
    field: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Accepted events as columns, and the rejected ones."""

    events: EventColumns
    rejections: tuple[Rejection, ...]
    failed: FailedColumns


def batch_id_problem(batch_id: str) -> str | None:
    """Return why a request's batch_id is unacceptable, or None."""
    if len(batch_id) > MAX_BATCH_ID_CHARS:
        return f"batch_id is {len(batch_id)} characters; the limit is {MAX_BATCH_ID_CHARS}"
    if _CONTROL.search(batch_id):
        return "batch_id contains control characters"
    return None


def validate_events(
    events: IncomingColumns | Sequence[EventMessage],
    *,
    batch_id: str,
    now_ms: int,
    limits: Limits,
    pseudonymise: Callable[[str], bytes],
) -> ValidationResult:
    """Split events into accepted columns and rejections; user ids leave pseudonymised."""
    incoming = events if isinstance(events, IncomingColumns) else from_events(events)
    newest = now_ms + limits.max_clock_skew_ms
    oldest = now_ms - limits.retention_ms
    failed = FailedColumns()
    rejections: list[Rejection] = []
    columns = incoming
    if not _all_valid(incoming, newest=newest, oldest=oldest):
        columns = IncomingColumns()
        for index in range(len(incoming)):
            event = incoming.row(index)
            problem = _event_problem(event, newest=newest, oldest=oldest)
            if problem is None:
                columns.append(event)
                continue
            field, code, reason = problem
            rejections.append(Rejection(index, field, code, reason))
            _add_failed(failed, event, index, problem, batch_id, now_ms, pseudonymise)
    out = EventColumns(
        event_id=columns.event_id,
        occurred_at=columns.occurred_at,
        received_at=[now_ms] * len(columns.event_id),
        tool=columns.tool,
        action=columns.action,
        user_id=[pseudonymise(u) for u in columns.user_id],
        org_unit=columns.org_unit,
        feature=columns.feature,
        client=columns.client,
        property_keys=columns.property_keys,
        property_values=columns.property_values,
    )
    return ValidationResult(out, tuple(rejections), failed)


def _all_valid(columns: IncomingColumns, *, newest: int, oldest: int) -> bool:
    """Tell whether every event is valid (if not, they are checked one by one).

    Checks whole columns at once: distinct slugs once each, lengths by min/max,
    control characters by one search over the joined column. Valid batches are
    the common case, and this costs a fraction of the event-by-event path.
    """
    if not len(columns):
        return True
    stamps, users, orgs = columns.occurred_at, columns.user_id, columns.org_unit
    if (
        any(len(i) != EVENT_ID_BYTES for i in columns.event_id)
        or min(stamps) < max(oldest, 1)
        or max(stamps) > newest
        or min(map(len, users)) == 0
        or max(map(len, users)) > MAX_USER_ID_CHARS
        or max(map(len, orgs)) > MAX_ORG_UNIT_CHARS
        or _CONTROL.search("".join(users))
        or _CONTROL.search("".join(orgs))
    ):
        return False
    if (
        any(_slug_problem("tool", t, required=True) for t in set(columns.tool))
        or any(_slug_problem("action", a, required=True) for a in set(columns.action))
        or any(_slug_problem("feature", f, required=False) for f in set(columns.feature))
        or any(
            _text_problem("client", c, MAX_CLIENT_CHARS, required=False)
            for c in set(columns.client)
        )
    ):
        return False
    for k, v in zip(columns.property_keys, columns.property_values, strict=True):
        if (k or v) and _properties_problem(k, v) is not None:
            return False
    return True


_Problem = tuple[str, str, str]


def _event_problem(event: Row, *, newest: int, oldest: int) -> _Problem | None:
    if len(event.event_id) != EVENT_ID_BYTES:
        return (
            "event_id",
            "invalid_event_id" if event.event_id else "missing",
            f"event_id must be {EVENT_ID_BYTES} bytes (a UUID), got {len(event.event_id)}",
        )
    ts = event.occurred_at_ms
    if ts <= 0:
        return ("occurred_at_ms", "missing", "occurred_at_ms must be set (ms since the epoch)")
    if ts > newest:
        return (
            "occurred_at_ms",
            "timestamp_future",
            f"occurred_at_ms is {(ts - newest) // 1000 + 1} s beyond the allowed clock skew",
        )
    if ts < oldest:
        return (
            "occurred_at_ms",
            "timestamp_too_old",
            "occurred_at_ms is older than the retention period",
        )
    return (
        _slug_problem("tool", event.tool, required=True)
        or _slug_problem("action", event.action, required=True)
        or _text_problem("user_id", event.user_id, MAX_USER_ID_CHARS, required=True)
        or _text_problem("org_unit", event.org_unit, MAX_ORG_UNIT_CHARS, required=False)
        or _slug_problem("feature", event.feature, required=False)
        or _text_problem("client", event.client, MAX_CLIENT_CHARS, required=False)
        or _properties_problem(event.property_keys, event.property_values)
    )


@lru_cache(maxsize=4096)
def _slug_problem(field: str, value: str, *, required: bool) -> _Problem | None:
    if not value:
        return (field, "missing", f"{field} is required") if required else None
    if len(value) > MAX_SLUG_CHARS:
        return (
            field,
            "too_long",
            f"{field} is {len(value)} characters; the limit is {MAX_SLUG_CHARS}",
        )
    if not _SLUG.fullmatch(value):
        return (
            field,
            "invalid_slug",
            f"{field} must be a lowercase slug (a letter, then a-z, 0-9, '_', '-', '.'), "
            f"got {_shorten(value)!r}",
        )
    return None


def _text_problem(field: str, value: str, limit: int, *, required: bool) -> _Problem | None:
    if not value:
        return (field, "missing", f"{field} is required") if required else None
    if len(value) > limit:
        return (field, "too_long", f"{field} is {len(value)} characters; the limit is {limit}")
    if _CONTROL.search(value):
        return (field, "control_characters", f"{field} contains control characters")
    return None


def _properties_problem(keys: Sequence[str], values: Sequence[str]) -> _Problem | None:
    if not keys and not values:
        return None
    if len(keys) != len(values):
        return (
            "property_values",
            "property_mismatch",
            f"property_keys has {len(keys)} entries but property_values has {len(values)}",
        )
    if len(keys) > MAX_PROPERTIES:
        return (
            "property_keys",
            "too_many_properties",
            f"{len(keys)} properties; the limit is {MAX_PROPERTIES}",
        )
    total = 0
    seen: set[str] = set()
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        problem = _slug_problem(f"property_keys[{i}]", key, required=True)
        if problem is not None:
            return problem
        if key in seen:
            return (f"property_keys[{i}]", "duplicate_property", f"property {key!r} is repeated")
        seen.add(key)
        if len(value) > MAX_PROPERTY_VALUE_CHARS:
            return (
                f"property_values[{i}]",
                "too_long",
                f"value of property {key!r} is {len(value)} characters; "
                f"the limit is {MAX_PROPERTY_VALUE_CHARS}",
            )
        if _CONTROL.search(value):
            return (
                f"property_values[{i}]",
                "control_characters",
                f"value of property {key!r} contains control characters",
            )
        total += len(key.encode()) + len(value.encode())
    if total > MAX_PROPERTIES_BYTES:
        return (
            "property_values",
            "properties_too_large",
            f"properties take {total} bytes; the limit is {MAX_PROPERTIES_BYTES}",
        )
    return None


def _add_failed(
    failed: FailedColumns,
    event: Row,
    index: int,
    problem: _Problem,
    batch_id: str,
    now_ms: int,
    pseudonymise: Callable[[str], bytes],
) -> None:
    field, code, reason = problem
    payload = {
        "event_id": event.event_id.hex(),
        "occurred_at_ms": event.occurred_at_ms,
        "tool": _shorten(event.tool),
        "action": _shorten(event.action),
        # Never the raw id: a rejected event is pseudonymised like a stored one.
        "user_id": pseudonymise(event.user_id).hex() if event.user_id else "",
        "org_unit": _shorten(event.org_unit),
        "feature": _shorten(event.feature),
        "properties": [
            [_shorten(k), _shorten(v)]
            for k, v in zip(
                list(event.property_keys)[:MAX_PROPERTIES],
                list(event.property_values)[:MAX_PROPERTIES],
                strict=False,
            )
        ],
    }
    failed.received_at.append(now_ms)
    failed.batch_id.append(batch_id)
    failed.event_index.append(index)
    failed.field.append(field)
    failed.code.append(code)
    failed.reason.append(reason)
    failed.client.append(_shorten(event.client, MAX_CLIENT_CHARS))
    failed.payload.append(json.dumps(payload, ensure_ascii=False))


def _shorten(value: str, limit: int = MAX_PAYLOAD_FIELD_CHARS) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
