"""Coverage-guided fuzzing with atheris (libFuzzer) over request decoding and validation."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from uptake.v1 import ingest_pb2

ROOT = Path(__file__).resolve().parents[2]
RUNS = 30_000


def seeds() -> list[bytes]:
    now = int(time.time() * 1000)
    full = ingest_pb2.Event(
        event_id=os.urandom(16), occurred_at_ms=now, tool="wiki", action="page_edit",
        user_id="u1", org_unit="sales", feature="editor", client="fuzz/1",
        property_keys=["space"], property_values=["handbook"],
    )  # fmt: skip
    bad = ingest_pb2.Event(event_id=b"x", occurred_at_ms=-1, tool="Wiki", user_id="\x00")
    # fmt: off
    return [
        ingest_pb2.IngestRequest(batch_id="b", events=[full]).SerializeToString(),
        ingest_pb2.IngestRequest(events=[full, bad, full]).SerializeToString(),
        ingest_pb2.IngestRequest(
            columns=ingest_pb2.Columns(
                event_id=[full.event_id, b"x"], occurred_at_ms=[now, -1], tool=["wiki", "Wiki"],
                action=["page_edit", ""], user_id=["u1", "\x00"], org_unit=["sales", ""],
                property_counts=[1, 0], property_keys=["space"], property_values=["handbook"],
            )
        ).SerializeToString(),
        b"",
    ]
    # fmt: on


def test_coverage_guided_fuzzing_finds_no_crash(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        # atheris publishes wheels for x86_64 only; elsewhere it needs clang and libFuzzer.
        message = "atheris is not installed: run make venv (x86_64 only)"
        if IN_CI and platform.machine() == "x86_64":
            pytest.fail(message)
        pytest.skip(message)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number}").write_bytes(seed)
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_ingest", str(corpus),
         f"-runs={RUNS}", "-max_len=4096", "-timeout=20"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
