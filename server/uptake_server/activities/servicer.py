"""The gRPC ActivityService: requests to the activity store and reports, errors to statuses.

Invalid input -> INVALID_ARGUMENT naming the field; unknown id -> NOT_FOUND; taken
id -> ALREADY_EXISTS; registry activity -> FAILED_PRECONDITION; a tool outside the
key's scope -> PERMISSION_DENIED; store down -> UNAVAILABLE with RetryInfo.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import grpc

from uptake.v1 import activity_pb2, activity_pb2_grpc
from uptake_server.activities.measure import Measurer
from uptake_server.activities.model import (
    ActivityError,
    ActivityExists,
    ActivityLocked,
    ActivityNotFound,
)
from uptake_server.activities.report import report
from uptake_server.activities.store import ActivityBackend, ActivityStore, open_activities
from uptake_server.activities.wire import effect_to_proto, from_proto, to_proto
from uptake_server.config import Settings
from uptake_server.errors import StoreError, StoreUnavailable
from uptake_server.registry import load_registry
from uptake_server.security.guard import current_caller
from uptake_server.security.status import (
    Refusal,
    invalid_argument,
    permission_denied,
    unavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
_CODES: dict[type[ActivityError], grpc.StatusCode] = {
    ActivityExists: grpc.StatusCode.ALREADY_EXISTS,
    ActivityNotFound: grpc.StatusCode.NOT_FOUND,
    ActivityLocked: grpc.StatusCode.FAILED_PRECONDITION,
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ActivityServicer(activity_pb2_grpc.ActivityServiceServicer):
    """Add, list, remove and report adoption activities."""

    def __init__(
        self,
        *,
        store: ActivityStore,
        measurer: Measurer,
        min_group_size: int,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self._store = store
        self._measurer = measurer
        self._k = min_group_size
        self._clock = clock

    def AddActivity(
        self, request: activity_pb2.AddActivityRequest, context: grpc.ServicerContext
    ) -> activity_pb2.AddActivityResponse:
        """Validate and record one activity."""

        def add() -> activity_pb2.AddActivityResponse:
            self._check_scope(request.activity.tool, context)
            if request.activity.kind == activity_pb2.ACTIVITY_KIND_UNSPECIFIED:
                _abort(context, invalid_argument("activity.kind", "activity.kind is missing"))
            added = self._store.add(from_proto(request.activity), source="api")
            return activity_pb2.AddActivityResponse(activity=to_proto(added))

        return _answer(context, "AddActivity", add)

    def ListActivities(
        self, request: activity_pb2.ListActivitiesRequest, context: grpc.ServicerContext
    ) -> activity_pb2.ListActivitiesResponse:
        """Return the activities the key may see, newest start first."""

        def listing() -> activity_pb2.ListActivitiesResponse:
            if request.limit > MAX_LIST_LIMIT:
                _abort(context, invalid_argument("limit", f"limit is at most {MAX_LIST_LIMIT}"))
            caller = current_caller()
            found = [
                a for a in self._store.find(tool=request.tool or None) if caller.may_touch(a.tool)
            ]
            limit = request.limit or DEFAULT_LIST_LIMIT
            return activity_pb2.ListActivitiesResponse(
                activities=[to_proto(a) for a in found[:limit]]
            )

        return _answer(context, "ListActivities", listing)

    def RemoveActivity(
        self, request: activity_pb2.RemoveActivityRequest, context: grpc.ServicerContext
    ) -> activity_pb2.RemoveActivityResponse:
        """Remove one activity recorded through the API or the command line."""

        def remove() -> activity_pb2.RemoveActivityResponse:
            current = self._store.get(request.id)
            if current is not None:
                self._check_scope(current.tool, context)
            removed = self._store.remove(request.id)
            return activity_pb2.RemoveActivityResponse(activity=to_proto(removed))

        return _answer(context, "RemoveActivity", remove)

    def ReportActivities(
        self, request: activity_pb2.ReportActivitiesRequest, context: grpc.ServicerContext
    ) -> activity_pb2.ReportActivitiesResponse:
        """Return the measured effect of the activities asked for."""

        def reporting() -> activity_pb2.ReportActivitiesResponse:
            found = report(
                self._store,
                self._measurer,
                now=self._clock(),
                tool=request.tool,
                activity_id=request.id,
                visible=current_caller().may_touch,
            )
            return activity_pb2.ReportActivitiesResponse(
                effects=[effect_to_proto(e) for e in found], min_group_size=self._k
            )

        return _answer(context, "ReportActivities", reporting)

    @staticmethod
    def _check_scope(tool: str, context: grpc.ServicerContext) -> None:
        if tool and not current_caller().may_touch(tool):
            _abort(
                context,
                permission_denied(f"this API key may not touch activities of tool {tool[:64]!r}"),
            )


def _answer(context: grpc.ServicerContext, method: str, work: Callable[[], T]) -> T:
    """Run one call; map activity and store errors to gRPC statuses."""
    started = time.perf_counter()
    try:
        answer = work()
    except ActivityError as exc:
        code = _CODES.get(type(exc))
        if code is None:
            _abort(context, invalid_argument(exc.field, str(exc)))
        context.abort(code, str(exc))
    except StoreUnavailable as exc:
        log.warning("%s: the store is unavailable: %s", method, exc)
        refusal = unavailable(
            "the store is unavailable; retry later", retry_after_seconds=exc.retry_after_seconds
        )
        _abort(context, refusal)
    except StoreError as exc:
        log.error("%s failed in the store: %s", method, exc)
        context.abort(grpc.StatusCode.INTERNAL, "the store failed; see the server log")
    log.debug("%s answered in %.3f s", method, time.perf_counter() - started)
    return answer


def _abort(context: grpc.ServicerContext, refusal: Refusal) -> NoReturn:
    context.abort_with_status(refusal.status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def activity_servicer(settings: Settings, backend: ActivityBackend) -> ActivityServicer:
    """Build the servicer the settings describe, with the registry's activities synced."""
    registry = load_registry(settings.registry_file or None)
    store = open_activities(backend, registry=registry, source=settings.registry_file)
    return ActivityServicer(
        store=store,
        measurer=Measurer(backend, registry=registry, k=settings.min_group_size),
        min_group_size=settings.min_group_size,
    )
