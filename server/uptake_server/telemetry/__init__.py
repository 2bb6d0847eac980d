"""Operations telemetry: OpenTelemetry spans and the request id every log line of a call carries.

The gRPC interceptor lives in `uptake_server.telemetry.interceptor` (transport);
this package's top level stays free of it, so the store can trace its inserts.
"""

from uptake_server.telemetry.context import current_request_id
from uptake_server.telemetry.tracing import Telemetry, insert_span, open_telemetry, span

__all__ = ["Telemetry", "current_request_id", "insert_span", "open_telemetry", "span"]
