"""Keys, services with authentication on, and a raw Ingest call that returns the status."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.server.test_service import settings_for
from uptake.v1 import ingest_pb2
from uptake_server.app import Service
from uptake_server.security.keyfile import KeyFile

INGEST = "/uptake.v1.IngestService/Ingest"


@dataclass(frozen=True)
class Keys:
    """A keys file with a key per scope: wiki only, chat only, every tool, and a revoked one."""

    path: Path
    wiki: str
    chat: str
    every: str
    revoked: str
    slow: str  # wiki, limited to 50 events per second


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    path = tmp_path_factory.mktemp("keys") / "api-keys.yaml"
    file = KeyFile(path, setting="UPTAKE_API_KEYS_FILE")
    made = {
        name: file.create(name=name, tools=tools, events_per_second=rate)
        for name, tools, rate in (
            ("wiki", ["wiki"], None),
            ("chat", ["chat"], None),
            ("every", ["*"], None),
            ("revoked", ["wiki"], None),
            ("slow", ["wiki"], 50.0),
        )
    }
    file.revoke(made["revoked"][1].id)
    return Keys(path, **{name: key for name, (key, _) in made.items()})


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Service]:
    """One service with authentication on, shared by the tests of a module."""
    data_dir = tmp_path_factory.mktemp("secured") / "var"
    service = Service(settings_for(data_dir, api_keys_file=str(keys.path)))
    service.start()
    yield service
    service.stop()


@dataclass(frozen=True)
class Answer:
    """What the server answered to one call."""

    code: grpc.StatusCode
    message: str
    response: ingest_pb2.IngestResponse | None
    retry_after: float | None
    violations: list[tuple[str, str]]


Call = Callable[..., Answer]


def call_ingest(
    channel: grpc.Channel,
    request: ingest_pb2.IngestRequest | bytes,
    *,
    key: str | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 30,
) -> Answer:
    """Send one Ingest request (a message or raw bytes) and return the answer, error or not."""
    method = channel.unary_unary(INGEST)
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    sent = [*metadata, *((("authorization", f"Bearer {key}"),) if key else ())]
    try:
        reply = method(raw, metadata=sent, timeout=timeout)
    except grpc.RpcError as error:
        return _failure(error)
    return Answer(grpc.StatusCode.OK, "", ingest_pb2.IngestResponse.FromString(reply), None, [])


def _failure(error: grpc.RpcError) -> Answer:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    retry = None
    violations = []
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            retry = info.retry_delay.ToMilliseconds() / 1000
        elif detail.Unpack(bad):
            violations += [(v.field, v.description) for v in bad.field_violations]
    return Answer(error.code(), error.details() or "", None, retry, violations)


@pytest.fixture
def channel(secured: Service) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secured.grpc_target) as opened:
        yield opened


def stored_count(service: Service, table: str, where: str) -> int:
    """Count rows of a table of the running service's store."""
    rows = service.store.query(f"SELECT count() FROM {table} WHERE {where}")
    return int(rows[0][0])


def ids_stored(service: Service, ids: Sequence[bytes]) -> int:
    """Count how many of these event ids the running service's store holds (rows, not ids)."""
    if not ids:
        return 0
    listed = ",".join(f"unhex('{i.hex()}')" for i in ids)
    return stored_count(service, "events", f"event_id IN ({listed})")
