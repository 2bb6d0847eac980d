"""Refusals the guard answers with: a gRPC status code, a message and rich error details."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

# Spread the retries of refused clients so they do not come back in step; never
# earlier than asked, or a client that obeys would be refused again.
_JITTER = (1.0, 1.5)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the guard answers without running the service."""

    code: grpc.StatusCode
    status: grpc.Status


def _refusal(code: grpc.StatusCode, message: str, *details: Message) -> Refusal:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    rpc_code = getattr(code_pb2, code.name)
    status = status_pb2.Status(code=rpc_code, message=message, details=packed)
    return Refusal(code, rpc_status.to_status(status))


def unauthenticated(message: str) -> Refusal:
    """Refuse a request whose API key is missing or not valid."""
    return _refusal(grpc.StatusCode.UNAUTHENTICATED, message)


def permission_denied(message: str) -> Refusal:
    """Refuse a request the API key may not make."""
    return _refusal(grpc.StatusCode.PERMISSION_DENIED, message)


def invalid_argument(field: str, description: str) -> Refusal:
    """Refuse a malformed request, naming the offending field."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    detail = error_details_pb2.BadRequest(field_violations=[violation])
    return _refusal(grpc.StatusCode.INVALID_ARGUMENT, description, detail)


def unavailable(message: str, *, retry_after_seconds: float) -> Refusal:
    """Ask the client to retry later, after about `retry_after_seconds` (jittered)."""
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(max(1, int(retry_after_seconds * random.uniform(*_JITTER) * 1000)))
    detail = error_details_pb2.RetryInfo(retry_delay=delay)
    return _refusal(grpc.StatusCode.UNAVAILABLE, message, detail)
