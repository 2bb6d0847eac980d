"""A small OTLP/gRPC trace collector on loopback: it keeps what exporters send it."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Accept every OTLP trace export; `stop()` ends the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        """Return the URL an OTLP exporter is pointed at."""
        return f"http://127.0.0.1:{self.port}"

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Keep the exported spans."""
        with self._lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """Return (resource attributes, span) for every span received."""
        found = []
        with self._lock:
            for request in self.requests:
                for resource_spans in request.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        found += [(resource, span) for span in scope_spans.spans]
        return found

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop(None).wait()


def attributes(values: Any) -> dict[str, Any]:
    """Turn OTLP key-values into a dict of plain values."""
    result: dict[str, Any] = {}
    for item in values:
        kind = item.value.WhichOneof("value")
        value = getattr(item.value, kind) if kind else None
        if kind == "array_value":
            value = tuple(getattr(v, v.WhichOneof("value")) for v in value.values)
        result[item.key] = value
    return result
