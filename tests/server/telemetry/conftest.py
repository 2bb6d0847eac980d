"""Spans recorded in memory, and a service that traces into them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.server.test_service import settings_for
from uptake_server.app import Service
from uptake_server.security.keyfile import KeyFile
from uptake_server.telemetry import Telemetry

# Values that must never reach a span or a log line.
RAW_USER = "raw-user-4f1d@example.org"
PROPERTY_VALUE = "property-value-9c2e"


class Spans:
    """Every span the provider ended, synchronously, with lookups."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry = Telemetry.for_provider(self.provider)

    def all(self) -> list[ReadableSpan]:
        """Return the finished spans, oldest first."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        """Return the finished spans of one name."""
        return [s for s in self.all() if s.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """Return the spans whose parent is `parent`."""
        return [
            s
            for s in self.all()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def clear(self) -> None:
        """Forget the spans recorded so far."""
        self.exporter.clear()


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()


@pytest.fixture
def api_key(tmp_path: Path) -> tuple[Path, str]:
    """Return a keys file with one key for tool wiki, and the key."""
    path = tmp_path / "api-keys.yaml"
    key, _ = KeyFile(path, setting="UPTAKE_API_KEYS_FILE").create(name="wiki", tools=["wiki"])
    return path, key


@pytest.fixture
def traced(tmp_path: Path, spans: Spans, api_key: tuple[Path, str]) -> Iterator[Service]:
    """A service with API keys on that traces into `spans`."""
    settings = settings_for(
        tmp_path / "var", api_keys_file=str(api_key[0]), max_events_per_request=50
    )
    service = Service(settings, telemetry=spans.telemetry)
    service.start()
    yield service
    service.stop()


def text_of(span: ReadableSpan) -> str:
    """Return everything a span carries as text: attributes, events, links, status, resource."""
    parts = [span.name, str(dict(span.attributes or {})), str(span.status.description)]
    parts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
    parts += [str(dict(link.attributes or {})) for link in span.links]
    parts.append(str(dict(span.resource.attributes)))
    return "\n".join(parts)
