"""Shared test configuration."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, *, install: str) -> str:
    """Return the path of a system tool; skip (fail with CI=true) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; install it with: {install}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
