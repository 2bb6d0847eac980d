"""Names of the span attributes Uptake sets, in one place (docs/operations.md lists them).

Attributes hold counts, codes, tool-independent ids and names only: never a user
id (raw or pseudonymised), an API key, a property value or any other event field.
"""

from __future__ import annotations

# OpenTelemetry semantic conventions (RPC, database, errors).
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
DB_SYSTEM = "db.system.name"
DB_OPERATION = "db.operation.name"
ERROR_TYPE = "error.type"

# Uptake's own.
REQUEST_ID = "uptake.request_id"
REQUEST_EVENTS = "uptake.request.events"
EVENTS_ACCEPTED = "uptake.events.accepted"
EVENTS_REJECTED = "uptake.events.rejected"
EVENTS_VALID = "uptake.events.valid"
REJECTION_CODES = "uptake.rejection.codes"
COMMIT_ROWS = "uptake.commit.rows"
EVENTS_STORED = "uptake.events.stored"
EVENTS_DUPLICATE = "uptake.events.duplicate"
INSERT_EVENTS = "uptake.insert.events"
INSERT_FAILED_EVENTS = "uptake.insert.failed_events"
INSERT_REQUESTS = "uptake.insert.requests"
INSERT_DUPLICATES = "uptake.insert.duplicates"
