"""The real server process with JSON logs and OTLP export, driven through its main paths.

One run per module: `uptake-server serve` with UPTAKE_LOG_FORMAT=json at DEBUG,
API keys on, a ClickHouse HTTP store that can fail, and OTEL_EXPORTER_OTLP_ENDPOINT
pointing at a collector in the test. It answers a good batch with rejections,
refusals of every kind, a malformed request and a store outage; then every line
it logged and every span it exported are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.server.telemetry.collector import Collector, attributes
from tests.server.telemetry.conftest import PROPERTY_VALUE, RAW_USER
from tests.server.test_service import event
from tests.support.clickhouse_http import ClickHouseHTTP
from tests.support.servers import ServerProcess, health_status
from uptake.v1 import ingest_pb2
from uptake_server.security.keyfile import KeyFile

INGEST = "/uptake.v1.IngestService/Ingest"
WRONG_KEY = "upk_not-a-real-key-3b9d"
SERVICE_NAME = "uptake-under-test"


@dataclass(frozen=True)
class Run:
    """What one server run printed to stderr and exported, and the codes it answered."""

    lines: list[str]
    spans: list[tuple[dict[str, Any], trace_pb2.Span]]
    answers: dict[str, grpc.StatusCode]
    key: str


def call(
    target: str, request: ingest_pb2.IngestRequest | bytes, key: str | None
) -> grpc.StatusCode:
    """Send one Ingest request as bytes; return the status code."""
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    metadata = [("authorization", f"Bearer {key}")] if key else []
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(INGEST)(raw, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


def private_events(count: int, **changes: object) -> list[ingest_pb2.Event]:
    fields: dict[str, object] = {
        "user_id": RAW_USER,
        "property_keys": ["plan"],
        "property_values": [PROPERTY_VALUE],
    }
    fields.update(changes)
    return [event(**fields) for _ in range(count)]


def wait_serving(server: ServerProcess, process: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + 60
    while health_status(server.target, timeout=1.0) != health_pb2.HealthCheckResponse.SERVING:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start:\n{stderr.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("json-logs")
    keys = root / "api-keys.yaml"
    key, _ = KeyFile(keys, setting="UPTAKE_API_KEYS_FILE").create(name="wiki", tools=["wiki"])
    collector = Collector()
    clickhouse = ClickHouseHTTP(root / "clickhouse")
    dsn = clickhouse.url.replace("://", "://default@") + "/uptake"
    server = ServerProcess(
        root / "var",
        extra_args=["--store-dsn", dsn, "--api-keys-file", str(keys)],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPTAKE_", "OTEL_"))}
    env |= {
        "UPTAKE_LOG_FORMAT": "json",
        "UPTAKE_LOG_LEVEL": "DEBUG",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": SERVICE_NAME,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    stderr = root / "stderr.log"
    answers: dict[str, grpc.StatusCode] = {}
    try:
        with open(stderr, "wb") as err, open(root / "stdout.log", "wb") as out:
            process = subprocess.Popen(server.command(), stdout=out, stderr=err, env=env)
        try:
            wait_serving(server, process, stderr)
            target = server.target
            good = (
                private_events(3)
                + private_events(1, action="")
                + private_events(1, occurred_at_ms=1)
            )
            answers["good"] = call(
                target, ingest_pb2.IngestRequest(batch_id="good-1", events=good), key
            )
            answers["again"] = call(
                target, ingest_pb2.IngestRequest(batch_id="good-1", events=good), key
            )
            one = ingest_pb2.IngestRequest(batch_id="refused-1", events=private_events(1))
            answers["no key"] = call(target, one, None)
            answers["wrong key"] = call(target, one, WRONG_KEY)
            chat = ingest_pb2.IngestRequest(
                batch_id="perm-1", events=private_events(1, tool="chat")
            )
            answers["tool not allowed"] = call(target, chat, key)
            # events[0].user_id with a byte sequence that is not UTF-8.
            malformed = b"\x12\x0b\x2a\x09" + b"\xffbad-user"
            answers["malformed"] = call(target, malformed, key)
            clickhouse.fault("503", match="INSERT INTO `events`")
            outage = ingest_pb2.IngestRequest(batch_id="outage-1", events=private_events(2))
            answers["outage"] = call(target, outage, key)
            clickhouse.fault(None)
        finally:
            server.process = process
            server.stop()
        yield Run(stderr.read_text().splitlines(), collector.spans(), answers, key)
    finally:
        clickhouse.stop()
        collector.stop()


def test_the_paths_were_taken(run: Run) -> None:
    assert run.answers == {
        "good": grpc.StatusCode.OK,
        "again": grpc.StatusCode.OK,
        "no key": grpc.StatusCode.UNAUTHENTICATED,
        "wrong key": grpc.StatusCode.UNAUTHENTICATED,
        "tool not allowed": grpc.StatusCode.PERMISSION_DENIED,
        "malformed": grpc.StatusCode.INVALID_ARGUMENT,
        "outage": grpc.StatusCode.UNAVAILABLE,
    }


def test_every_line_is_json_and_carries_no_user_id_key_or_property_value(run: Run) -> None:
    assert len(run.lines) > 10
    for line in run.lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= set(entry), line
        for secret in (RAW_USER, "bad-user", PROPERTY_VALUE, run.key, WRONG_KEY):
            assert secret not in line, f"{secret!r} logged: {line}"


def test_lines_of_a_request_carry_its_request_id_and_trace(run: Run) -> None:
    entries = [json.loads(line) for line in run.lines]
    answered = [e for e in entries if e["message"].startswith("Ingest answered")]
    assert [e["message"].split()[2] for e in answered] == [
        "OK", "OK", "UNAUTHENTICATED", "UNAUTHENTICATED", "PERMISSION_DENIED",
        "INVALID_ARGUMENT", "UNAVAILABLE",
    ]  # fmt: skip
    ids = [e["request_id"] for e in answered]
    assert ids[:2] == ["good-1", "good-1"] and ids[4] == "perm-1" and ids[6] == "outage-1"
    # Refused before the request is read, or unreadable: a fresh id each time.
    assert len({ids[2], ids[3], ids[5]}) == 3 and all(len(ids[i]) == 16 for i in (2, 3, 5))
    traced = {span.trace_id.hex() for _, span in run.spans}
    for entry in answered:
        assert entry["trace_id"] in traced and len(entry["span_id"]) == 16
    (outage,) = [e for e in entries if e["message"].startswith("store unavailable")]
    assert outage["request_id"] == "outage-1" and outage["level"] == "warning"
    (refused,) = [e for e in entries if "refused for tool" in e["message"]]
    assert refused["request_id"] == "perm-1"
    # Lines outside a request (start, store probes, stop) carry none.
    assert any("request_id" not in e for e in entries)


def test_spans_are_exported_over_otlp_with_the_configured_service_name(run: Run) -> None:
    names = sorted({span.name for _, span in run.spans})
    assert names == [
        "uptake.commit", "uptake.store.insert", "uptake.v1.IngestService/Ingest", "uptake.validate",
    ]  # fmt: skip
    assert {resource["service.name"] for resource, _ in run.spans} == {SERVICE_NAME}
    requests = [s for _, s in run.spans if s.name == "uptake.v1.IngestService/Ingest"]
    by_id = {attributes(s.attributes)["uptake.request_id"]: s for s in requests}
    assert by_id["good-1"].status.code == trace_pb2.Status.STATUS_CODE_UNSET
    outage = by_id["outage-1"]
    assert outage.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert attributes(outage.attributes)["rpc.grpc.status_code"] == 14
    for resource, span in run.spans:
        text = f"{resource} {span}"
        for secret in (RAW_USER, PROPERTY_VALUE, run.key, WRONG_KEY):
            assert secret not in text, f"{secret!r} in span {span.name}"
