"""Activities through a running server's ActivityService: the command line's way in while the
server holds the embedded store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from uptake.v1 import activity_pb2, activity_pb2_grpc
from uptake_server.activities.effect import Effect
from uptake_server.activities.model import Activity, ActivityError
from uptake_server.activities.wire import effect_from_proto, from_proto, to_proto
from uptake_server.config import Settings, env_name
from uptake_server.errors import ConfigError

TIMEOUT_SECONDS = 60.0
Reply = TypeVar("Reply")


def local_target(listen: str) -> str:
    """Return the address to reach a server listening on `listen` from this machine."""
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


class RemoteActivities:
    """The activity commands, sent to the server at the gRPC address setting."""

    def __init__(self, settings: Settings, *, api_key_file: Path | None) -> None:
        self.target = local_target(settings.grpc_listen)
        self.min_group_size = settings.min_group_size
        self._metadata: list[tuple[str, str]] = []
        if api_key_file is not None:
            try:
                key = api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the API key file {api_key_file}: {exc}") from None
            self._metadata.append(("authorization", f"Bearer {key}"))
        self._channel = grpc.insecure_channel(self.target)
        self._stub = activity_pb2_grpc.ActivityServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, method: Callable[..., Reply], request: object) -> Reply:
        try:
            return method(request, metadata=self._metadata, timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            details: str = exc.details() or ""
            if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
                raise ActivityError(
                    f"the data directory is in use by a running server, but no server answers "
                    f"at {self.target}; point {env_name('grpc_listen')} at it"
                ) from None
            raise ActivityError(f"the server at {self.target} refused: {details}") from None

    def add(self, draft: Activity) -> Activity:
        """Record an activity on the server."""
        request = activity_pb2.AddActivityRequest(activity=to_proto(draft))
        return from_proto(self._call(self._stub.AddActivity, request).activity)

    def find(self, *, tool: str | None, limit: int) -> list[Activity]:
        """Return the server's activities, newest start first."""
        request = activity_pb2.ListActivitiesRequest(tool=tool or "", limit=limit)
        return [from_proto(a) for a in self._call(self._stub.ListActivities, request).activities]

    def remove(self, activity_id: str) -> Activity:
        """Remove an activity on the server."""
        request = activity_pb2.RemoveActivityRequest(id=activity_id)
        return from_proto(self._call(self._stub.RemoveActivity, request).activity)

    def report(self, *, tool: str, activity_id: str) -> list[Effect]:
        """Return the effects the server measures now."""
        request = activity_pb2.ReportActivitiesRequest(tool=tool, id=activity_id)
        reply = self._call(self._stub.ReportActivities, request)
        self.min_group_size = reply.min_group_size
        return [effect_from_proto(e) for e in reply.effects]
