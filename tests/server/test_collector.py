"""The serve command tunes Python's garbage collector for a long-running server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from uptake_server import collector

PROBE = textwrap.dedent(
    """
    import gc, json, sys
    from uptake_server import collector

    collected = []

    class Node:
        def __del__(self):
            collected.append(True)

    kept = [[i] for i in range(10_000)]  # alive at start: frozen, never walked again
    node = Node()
    node.me = node  # garbage at start, in a cycle: collected, not frozen
    del node
    before = gc.get_threshold()
    collector.tune()
    json.dump({"before": before, "after": gc.get_threshold(),
               "frozen": gc.get_freeze_count(), "collected": collected}, sys.stdout)
    """
)


def test_tune_freezes_the_start_and_raises_the_thresholds() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["before"] == [700, 10, 10]
    assert tuple(out["after"]) == collector.THRESHOLDS
    assert out["frozen"] >= 10_000
    assert out["collected"] == [True]
