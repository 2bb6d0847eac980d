"""Records on the wire: column-wise requests, their size bound, and servers that predate columns."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import uptake
from uptake._event import Record
from uptake._version import CLIENT_NAME
from uptake._wire import REQUEST_OVERHEAD_BYTES, records_of, to_proto, to_request, wire_size
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse

MakeClient = Callable[..., uptake.Client]

text = st.text(max_size=300)
records = st.lists(
    st.tuples(
        st.binary(min_size=16, max_size=16),
        st.integers(min_value=0, max_value=2**63 - 1),
        text,
        text,
        text,
        st.none() | text,
        st.none() | text,
        st.none() | st.lists(st.tuples(text, text), min_size=1, max_size=5).map(tuple),
    ),
    max_size=20,
)


def normal(record: Record) -> Record:
    """Return the record as it comes back from the wire: None fields become empty."""
    event_id, ms, tool, action, user_id, org_unit, feature, properties = record
    return (event_id, ms, tool, action, user_id, org_unit or "", feature or "", properties)


@given(records)
def test_columns_carry_every_record_and_stay_within_the_size_bound(batch: list[Record]) -> None:
    request = to_request(batch, attempt=7)
    assert request.HasField("columns") and request.attempt == 7
    assert records_of(IngestRequest.FromString(request.SerializeToString())) == [
        normal(r) for r in batch
    ]
    if batch:
        assert list(request.columns.client) == [CLIENT_NAME] * len(batch)
    assert request.ByteSize() <= sum(map(wire_size, batch)) + REQUEST_OVERHEAD_BYTES
    # The same records one message each (for servers that predate columns).
    rows = IngestRequest(events=[to_proto(r) for r in batch])
    assert records_of(rows) == [normal(r) for r in batch]


def test_a_server_that_predates_columns_gets_one_message_per_event(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    def old_server(request: IngestRequest) -> IngestResponse:
        # It does not know field 4: it sees the events of field 2 only.
        return IngestResponse(accepted=len(request.events))

    transport = uptake.InMemoryTransport(respond=old_server)
    client = make_client(transport=transport, batch_size=2, flush_interval=60)
    with caplog.at_level(logging.WARNING, logger="uptake"):
        for i in range(4):
            client.track(f"u{i}", "view", tool="wiki")
        assert client.flush(5)
    forms = [
        ("columns" if r.HasField("columns") else "events", r.attempt) for r in transport.requests
    ]
    # The first batch is resent as messages (a resend: the server checks duplicates);
    # every later batch goes as messages at once.
    assert forms == [("columns", 1), ("events", 2), ("events", 1)]
    assert client.stats().delivered == 4
    seen = [
        e.user_id
        for r in transport.requests
        if not r.HasField("columns")
        for e in uptake.RecordedEvent.of_request(r)
    ]
    assert seen == ["u0", "u1", "u2", "u3"]
    assert "predates them; sending one message per event from now on" in caplog.text


def test_an_answer_for_every_event_keeps_the_columns(make_client: MakeClient) -> None:
    def reject_all(request: IngestRequest) -> IngestResponse:
        count = len(request.columns.event_id)
        return IngestResponse(rejected=count)

    transport = uptake.InMemoryTransport(respond=reject_all)
    client = make_client(transport=transport, batch_size=2, flush_interval=60)
    for i in range(4):
        client.track(f"u{i}", "view", tool="wiki")
    client.flush(5)
    assert [r.HasField("columns") for r in transport.requests] == [True, True]
