"""Waiting in tests for something that happens in the background."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    check: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "the condition",
) -> None:
    """Poll `check` every `interval` seconds until true; raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout:g} s")
        time.sleep(interval)
