"""Translate activities and effects between the uptake.v1 messages and the domain records."""

from __future__ import annotations

import dataclasses

from uptake.v1 import activity_pb2
from uptake_server.activities.effect import (
    MEASURED,
    NO_COMPARISON,
    PENDING,
    WITHHELD,
    Effect,
    Group,
    Plan,
    periods_of,
)
from uptake_server.activities.model import KINDS, Activity

_KIND_PREFIX = "ACTIVITY_KIND_"
_STATUS = {
    PENDING: activity_pb2.EFFECT_STATUS_PENDING,
    MEASURED: activity_pb2.EFFECT_STATUS_MEASURED,
    WITHHELD: activity_pb2.EFFECT_STATUS_WITHHELD,
    NO_COMPARISON: activity_pb2.EFFECT_STATUS_NO_COMPARISON,
}
_STATUS_NAMES = {number: name for name, number in _STATUS.items()}


def kind_name(number: int) -> str:
    """Return the kind label of an ActivityKind number ("" when unspecified or unknown)."""
    if number not in activity_pb2.ActivityKind.values():
        return ""
    name = activity_pb2.ActivityKind.Name(activity_pb2.ActivityKind.ValueType(number))
    name = name.removeprefix(_KIND_PREFIX).lower()
    return name if name in KINDS else ""


def kind_number(name: str) -> activity_pb2.ActivityKind.ValueType:
    """Return the ActivityKind number of a kind label."""
    return activity_pb2.ActivityKind.Value(_KIND_PREFIX + name.upper())


def from_proto(message: activity_pb2.Activity) -> Activity:
    """Return the domain activity of a message (unvalidated)."""
    return Activity(
        id=message.id,
        tool=message.tool,
        kind=kind_name(message.kind) or f"(kind number {message.kind})",
        title=message.title,
        start_ms=message.start_ms,
        end_ms=message.end_ms,
        org_units=tuple(message.org_units),
        link=message.link,
        source=message.source or "api",
        recorded_ms=message.recorded_ms,
    )


def to_proto(activity: Activity) -> activity_pb2.Activity:
    """Return the message of a stored activity."""
    return activity_pb2.Activity(
        id=activity.id,
        tool=activity.tool,
        kind=kind_number(activity.kind),
        org_units=list(activity.org_units),
        start_ms=activity.start_ms,
        end_ms=activity.end_ms,
        title=activity.title,
        link=activity.link,
        source=activity.source,
        recorded_ms=activity.recorded_ms,
    )


def _group_to_proto(group: Group) -> activity_pb2.GroupFigures:
    return activity_pb2.GroupFigures(**dataclasses.asdict(group))


def _group_from_proto(message: activity_pb2.GroupFigures) -> Group:
    return Group(**{f.name: getattr(message, f.name) for f in dataclasses.fields(Group)})


def effect_to_proto(effect: Effect) -> activity_pb2.ActivityEffect:
    """Return the message of an effect (its figures already privacy-checked)."""
    periods = effect.plan.periods
    return activity_pb2.ActivityEffect(
        activity=to_proto(effect.activity),
        status=_STATUS[effect.status],
        reason=effect.reason,
        before_first_day=periods.before_first.isoformat(),
        before_last_day=periods.before_last.isoformat(),
        after_first_day=periods.after_first.isoformat(),
        after_last_day=periods.after_last.isoformat(),
        targeted=_group_to_proto(effect.targeted),
        comparison=_group_to_proto(effect.comparison),
        comparison_org_units=list(effect.comparison_units),
        uplift=effect.uplift if effect.uplift is not None else 0.0,
        overlapping=list(effect.plan.overlapping),
    )


def effect_from_proto(message: activity_pb2.ActivityEffect) -> Effect:
    """Return the effect a server reported."""
    activity = from_proto(message.activity)
    status = _STATUS_NAMES.get(message.status, WITHHELD)
    plan = Plan(activity, periods_of(activity), tuple(message.overlapping))
    return Effect(
        plan,
        status,
        message.reason,
        _group_from_proto(message.targeted),
        _group_from_proto(message.comparison),
        tuple(message.comparison_org_units),
        message.uplift if status == MEASURED else None,
    )
