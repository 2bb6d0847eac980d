"""Fixtures of the SDK tests: clients that are always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import uptake


@pytest.fixture
def make_client() -> Iterator[Callable[..., uptake.Client]]:
    """Build clients (in-memory transport unless given another) and close them all after."""
    clients: list[uptake.Client] = []

    def make(**options: Any) -> uptake.Client:
        options.setdefault("transport", uptake.InMemoryTransport())
        client = uptake.Client(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=0.5)
