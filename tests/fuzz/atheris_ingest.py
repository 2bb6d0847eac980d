"""Coverage-guided fuzzing (atheris, libFuzzer) of request decoding and validation.

Every input is decoded as the server decodes it; a request that decodes is
validated, and every event validation accepts must pass the independent oracle.
Any exception other than a defined refusal is a crash that libFuzzer reports.

    .venv/bin/python -m tests.fuzz.atheris_ingest CORPUS_DIR -runs=200000 -max_len=8192
"""

from __future__ import annotations

import sys
import time

import atheris

with atheris.instrument_imports(include=["uptake_server"]):
    from tests.fuzz.oracle import problems
    from uptake_server.ingest.columns import ColumnsProblem, incoming
    from uptake_server.ingest.validation import Limits, batch_id_problem, validate_events
    from uptake_server.security.guard import decode_request
    from uptake_server.security.status import Refusal

NOW_MS = int(time.time() * 1000)


def pseudonym(user_id: str) -> bytes:
    return (user_id.encode() + b"\0" * 16)[:16]


def test_one_input(data: bytes) -> None:
    """Decode and validate one input; raise when an invariant breaks."""
    request = decode_request(data)
    if isinstance(request, Refusal):
        assert request.code.name == "INVALID_ARGUMENT"
        return
    if batch_id_problem(request.batch_id) is not None:
        return
    try:
        events = incoming(request)  # either wire form
    except ColumnsProblem:
        return
    result = validate_events(
        events, batch_id=request.batch_id, now_ms=NOW_MS, limits=Limits(),
        pseudonymise=pseudonym,
    )  # fmt: skip
    columns = result.events
    assert len(columns) + len(result.rejections) == len(events)
    for i in range(len(columns)):
        row = (
            columns.event_id[i].hex(), columns.occurred_at[i], columns.received_at[i],
            columns.tool[i], columns.action[i], len(columns.user_id[i]), columns.org_unit[i],
            columns.feature[i], columns.client[i], columns.property_keys[i],
            columns.property_values[i],
        )  # fmt: skip
        found = problems(row)
        assert not found, f"validation accepted an invalid event: {found}"
        assert len(columns.event_id[i]) == 16


def main() -> None:
    """Run libFuzzer with the command-line arguments."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
