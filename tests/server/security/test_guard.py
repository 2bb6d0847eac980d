"""Authentication and per-tool authorisation through the real gRPC server and store."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import uptake
from tests.server.security.conftest import Keys, call_ingest, ids_stored, stored_count
from tests.server.test_service import event, scrape, settings_for
from uptake.v1 import ingest_pb2
from uptake_server.app import Service
from uptake_server.errors import ConfigError
from uptake_server.security.guard import INVALID_KEY, MISSING_KEY

BAD_KEYS = {
    "malformed": lambda k: "not-a-key",
    "unknown id": lambda k: "uptake_000000000000_" + k.wiki.split("_", 2)[2],
    "wrong secret": lambda k: k.wiki[:-4] + ("AAAA" if not k.wiki.endswith("AAAA") else "BBBB"),
    "revoked": lambda k: k.revoked,
    "empty bearer": lambda k: "",
}


@pytest.mark.parametrize("case", BAD_KEYS)
def test_every_bad_key_gets_the_same_unauthenticated_answer(
    case: str, keys: Keys, secured: Service, channel: grpc.Channel
) -> None:
    batch = [event()]
    answer = call_ingest(
        channel,
        ingest_pb2.IngestRequest(events=batch),
        metadata=[("authorization", f"Bearer {BAD_KEYS[case](keys)}")],
    )
    assert (answer.code, answer.message) == (grpc.StatusCode.UNAUTHENTICATED, INVALID_KEY)
    assert answer.retry_after is None and not answer.violations
    assert ids_stored(secured, [e.event_id for e in batch]) == 0


@pytest.mark.parametrize(
    "metadata",
    [
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer a"), ("authorization", "Bearer b")],
    ],
    ids=["basic scheme", "two headers"],
)
def test_malformed_authorization_is_unauthenticated(
    metadata: list[tuple[str, str]], keys: Keys, channel: grpc.Channel
) -> None:
    answer = call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]), metadata=metadata)
    assert (answer.code, answer.message) == (grpc.StatusCode.UNAUTHENTICATED, INVALID_KEY)


def test_a_missing_key_says_how_to_send_one(channel: grpc.Channel) -> None:
    answer = call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]))
    assert (answer.code, answer.message) == (grpc.StatusCode.UNAUTHENTICATED, MISSING_KEY)


def test_a_key_writes_its_own_tool_and_nothing_else(
    keys: Keys, secured: Service, channel: grpc.Channel
) -> None:
    own = [event(tool="wiki") for _ in range(3)]
    answer = call_ingest(channel, ingest_pb2.IngestRequest(events=own), key=keys.wiki)
    assert answer.code == grpc.StatusCode.OK and answer.response is not None
    assert answer.response.accepted == 3
    # One foreign event refuses the whole request: nothing of it is stored, not even
    # the rejected events of the key's own tool.
    mixed = [event(tool="wiki"), event(tool="wiki", action="Bad"), event(tool="chat")]
    denied = call_ingest(
        channel, ingest_pb2.IngestRequest(batch_id="mixed-denied", events=mixed), key=keys.wiki
    )
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.message == "this API key may not send events of tool 'chat' (events[2])"
    assert ids_stored(secured, [e.event_id for e in own]) == 3
    assert ids_stored(secured, [e.event_id for e in mixed]) == 0
    assert stored_count(secured, "failed_events", "batch_id = 'mixed-denied'") == 0


def test_a_key_is_held_to_its_tool_in_column_wise_requests(
    keys: Keys, secured: Service, channel: grpc.Channel
) -> None:
    batch = [event(tool="wiki"), event(tool="wiki"), event(tool="chat")]
    columns = ingest_pb2.Columns(
        event_id=[e.event_id for e in batch],
        occurred_at_ms=[e.occurred_at_ms for e in batch],
        tool=[e.tool for e in batch],
        action=[e.action for e in batch],
        user_id=[e.user_id for e in batch],
    )
    request = ingest_pb2.IngestRequest(columns=columns)
    denied = call_ingest(channel, request, key=keys.wiki)
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.message == "this API key may not send events of tool 'chat' (columns.tool[2])"
    assert ids_stored(secured, [e.event_id for e in batch]) == 0
    answer = call_ingest(channel, request, key=keys.every)
    assert answer.response is not None and answer.response.accepted == 3


def test_a_key_for_every_tool_writes_any_tool(
    keys: Keys, secured: Service, channel: grpc.Channel
) -> None:
    batch = [event(tool=tool) for tool in ("wiki", "chat", "intranet")]
    answer = call_ingest(channel, ingest_pb2.IngestRequest(events=batch), key=keys.every)
    assert answer.response is not None and answer.response.accepted == 3
    assert ids_stored(secured, [e.event_id for e in batch]) == 3


def test_an_event_without_tool_is_left_to_validation(keys: Keys, channel: grpc.Channel) -> None:
    answer = call_ingest(channel, ingest_pb2.IngestRequest(events=[event(tool="")]), key=keys.chat)
    assert answer.response is not None
    assert [(r.field, r.code) for r in answer.response.rejections] == [("tool", "missing")]


def test_health_and_reflection_need_no_key(secured: Service) -> None:
    with grpc.insecure_channel(secured.grpc_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="uptake.v1.IngestService"), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_refusals_are_counted_by_code(keys: Keys, secured: Service, channel: grpc.Channel) -> None:
    before = scrape(secured.metrics_url)
    call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]))
    call_ingest(channel, ingest_pb2.IngestRequest(events=[event(tool="chat")]), key=keys.wiki)
    after = scrape(secured.metrics_url)
    for code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        name = f"uptake_ingest_requests_total{{code={code}}}"
        assert after[name] - before.get(name, 0) == 1


def test_neither_keys_nor_user_ids_reach_the_log(
    keys: Keys, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = "jane.doe@example.com"
    call_ingest(channel, ingest_pb2.IngestRequest(events=[event(user_id=user)]), key=keys.wiki)
    call_ingest(channel, ingest_pb2.IngestRequest(events=[event(user_id=user)]), key=keys.revoked)
    bad = event(user_id=user, tool="chat")
    call_ingest(channel, ingest_pb2.IngestRequest(events=[bad]), key=keys.wiki)
    text = caplog.text
    for secret in (user, keys.wiki, keys.revoked, keys.wiki.split("_", 2)[2]):
        assert secret not in text


def test_without_a_keys_file_the_server_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API keys: set UPTAKE_API_KEYS_FILE"):
        Service(settings_for(tmp_path / "var", dev=False, pseudonym_key="k" * 32))


def test_a_missing_keys_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=f"{missing} \\(UPTAKE_API_KEYS_FILE\\) does not exist"):
        Service(settings_for(tmp_path / "var", api_keys_file=str(missing)))


def test_a_key_over_its_rate_is_told_when_to_come_back(keys: Keys, channel: grpc.Channel) -> None:
    # The slow key may send 50 events per second; 100 at once put it a second in debt.
    first = call_ingest(channel, ingest_pb2.IngestRequest(events=[event()] * 100), key=keys.slow)
    assert first.code == grpc.StatusCode.OK
    refused = call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]), key=keys.slow)
    assert refused.code == grpc.StatusCode.UNAVAILABLE
    assert refused.message == "this API key is over its rate limit of 50 events/s; retry later"
    # About a second of debt, less what the first request's commit already took.
    assert refused.retry_after is not None and 0.5 <= refused.retry_after < 1.6
    # Other keys are not affected.
    other = call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]), key=keys.wiki)
    assert other.code == grpc.StatusCode.OK
    time.sleep(refused.retry_after)
    again = call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]), key=keys.slow)
    assert again.code == grpc.StatusCode.OK


def test_the_sdk_honours_the_rate_limit_and_delivers_everything(
    keys: Keys, secured: Service
) -> None:
    client = uptake.Client(
        secured.grpc_target, api_key=keys.slow, batch_size=40, flush_interval=0.05
    )
    refused = "uptake_ingest_requests_total{code=UNAVAILABLE}"
    before = scrape(secured.metrics_url).get(refused, 0)
    try:
        time.sleep(1.5)  # let the slow key's bucket refill after the test before
        for n in range(120):
            client.track(f"user-{n}", "view", tool="wiki")
        assert client.flush(20)
        stats = client.stats()
    finally:
        client.close()
    assert stats.delivered == 120
    assert scrape(secured.metrics_url)[refused] > before  # it was held back, and came back
