"""Logging set-up: readable text for people, one JSON object per line for machines.

A line logged while serving an Ingest call carries the call's request id, and,
when the call is traced, the trace and span ids, so a log line and its trace
find each other.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry.trace import get_current_span

from uptake_server.telemetry.context import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def request_fields() -> dict[str, str]:
    """Return the request id and trace ids of the call being served (empty outside one)."""
    fields: dict[str, str] = {}
    request_id = current_request_id()
    if request_id is not None:
        fields["request_id"] = request_id
    context = get_current_span().get_span_context()
    if context.is_valid:
        fields["trace_id"] = f"{context.trace_id:032x}"
        fields["span_id"] = f"{context.span_id:016x}"
    return fields


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **request_fields(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Format a record as a line of text, ending with the request id inside a call."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Return the record's line, before any traceback."""
        line = super().formatMessage(record)
        request_id = current_request_id()
        return line if request_id is None else f"{line} [request {request_id}]"


def configure_logging(*, level: str, fmt: str) -> None:
    """Send log records to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
