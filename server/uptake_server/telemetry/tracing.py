"""OpenTelemetry tracing: the tracer provider the settings ask for, and the spans Uptake makes.

Tracing is off unless `Settings.tracing` names an exporter (config.py derives it
from the standard OTEL_* variables when UPTAKE_TRACING is unset). When on, the
SDK itself reads the rest of the OTEL_* variables: endpoint, headers, TLS,
compression and timeout of the OTLP exporter, the sampler, the batch processor
and the resource attributes.

Spans are made per request and per insert, never per event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    set_span_in_context,
)
from opentelemetry.util.types import Attributes

from uptake_server import __version__
from uptake_server.config import Settings
from uptake_server.telemetry import attributes as attr

log = logging.getLogger(__name__)

TRACER_NAME = "uptake_server"
DEFAULT_SERVICE_NAME = "uptake-server"
INSERT_SPAN = "uptake.store.insert"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The tracer the service uses (None: tracing off) and the provider it owns, if any."""

    tracer: Tracer | None = None
    provider: TracerProvider | None = None

    @classmethod
    def for_provider(cls, provider: TracerProvider) -> Telemetry:
        """Trace into a provider the caller owns (and shuts down), e.g. a test's."""
        return cls(tracer=provider.get_tracer(TRACER_NAME, __version__))

    def shutdown(self) -> None:
        """Export the spans still buffered and stop the provider this object owns."""
        if self.provider is not None:
            self.provider.shutdown()


def open_telemetry(settings: Settings) -> Telemetry:
    """Build the tracing the settings ask for: nothing when off, else an SDK provider."""
    if settings.tracing == "off":
        return Telemetry()
    exporter: SpanExporter
    if settings.tracing == "otlp":
        # Imported here: the gRPC exporter pulls in the OTLP protobuf modules.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        # sys.stdout as it is now: the exporter's default is bound when the SDK is imported.
        exporter = ConsoleSpanExporter(out=sys.stdout)
    provider = TracerProvider(resource=service_resource())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info(
        "tracing on: %s exporter (endpoint, sampler and resource from the OTEL_* variables)",
        settings.tracing,
    )
    return Telemetry(tracer=provider.get_tracer(TRACER_NAME, __version__), provider=provider)


def service_resource() -> Resource:
    """Return the resource of Uptake's spans: OTEL_SERVICE_NAME and friends, else our defaults."""
    resource = Resource({SERVICE_VERSION: __version__}).merge(Resource.create())
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


@contextmanager
def span(
    tracer: Tracer | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    parent: SpanContext | None = None,
    links: Sequence[SpanContext] = (),
) -> Iterator[Span]:
    """Run a block in a span (a no-op span when tracer is None); an exception marks it failed."""
    if tracer is None:
        yield INVALID_SPAN
        return
    # Exception messages are never recorded: a store error may quote what it was given.
    with tracer.start_as_current_span(
        name,
        context=set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None,
        kind=kind,
        attributes=attributes,
        links=[Link(context) for context in links],
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_failed(current, type(exc).__name__)
            raise


def mark_failed(current: Span, error_type: str, description: str | None = None) -> None:
    """Set a span's status to ERROR with `error.type` (a class or status code name)."""
    current.set_attribute(attr.ERROR_TYPE, error_type)
    current.set_status(Status(StatusCode.ERROR, description or error_type))


@contextmanager
def insert_span(
    tracer: Tracer | None,
    requests: Sequence[SpanContext | None],
    *,
    events: int,
    failed: int,
) -> Iterator[Span]:
    """Trace one group-commit insert that serves several requests.

    The insert is traced only when one of its requests is: it becomes a child of
    the first traced request's commit span (so a parent-based sampler keeps it
    whenever it keeps any of them) and links to every traced request's commit span.
    """
    traced = [c for c in requests if c is not None and c.is_valid and c.trace_flags.sampled]
    if tracer is None or not traced:
        yield INVALID_SPAN
        return
    with span(
        tracer,
        INSERT_SPAN,
        kind=SpanKind.CLIENT,
        parent=traced[0],
        links=traced,
        attributes={
            attr.DB_SYSTEM: "clickhouse",
            attr.DB_OPERATION: "INSERT",
            attr.INSERT_EVENTS: events,
            attr.INSERT_FAILED_EVENTS: failed,
            attr.INSERT_REQUESTS: len(requests),
        },
    ) as current:
        yield current
