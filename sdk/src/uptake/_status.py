"""Read the retry delay out of a gRPC `grpc-status-details-bin` trailer.

The trailer is a serialized google.rpc.Status whose `details` hold google.protobuf.Any
messages; the one we need is a google.rpc.RetryInfo{google.protobuf.Duration retry_delay}.
The SDK depends on grpcio and protobuf only, so google.rpc types are not importable here.
We decode the four tiny messages by hand rather than compiling a vendored .proto:
a generated google.rpc module would register `google.rpc.Status` in protobuf's default
descriptor pool and clash with googleapis-common-protos in applications that also load
it (grpcio-status does), and the wire format of these messages is frozen. The decoder
never raises: malformed input means "no retry delay".
"""

from __future__ import annotations

RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo"
_VARINT = 0
_FIXED64 = 1
_LENGTH = 2
_FIXED32 = 5


class _Malformed(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split one message into (field number, wire type, value) triples."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = _varint(data, pos)
        elif wire_type == _LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _Malformed
            value, pos = data[pos : pos + size], pos + size
        elif wire_type == _FIXED64:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire_type == _FIXED32:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise _Malformed
        if pos > len(data):
            raise _Malformed
        fields.append((number, wire_type, value))
    return fields


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _duration_seconds(data: bytes) -> float:
    seconds = nanos = 0
    for number, wire_type, value in _fields(data):
        if wire_type == _VARINT and isinstance(value, int):
            if number == 1:
                seconds = _signed64(value)
            elif number == 2:
                nanos = _signed64(value)
    return seconds + nanos / 1e9


def retry_delay(status_details: bytes) -> float | None:
    """Return RetryInfo.retry_delay in seconds from a serialized google.rpc.Status, if any."""
    try:
        for number, wire_type, detail in _fields(status_details):
            if number != 3 or wire_type != _LENGTH or not isinstance(detail, bytes):
                continue
            type_url = b""
            payload = b""
            for any_number, any_type, value in _fields(detail):
                if any_type == _LENGTH and isinstance(value, bytes):
                    if any_number == 1:
                        type_url = value
                    elif any_number == 2:
                        payload = value
            if type_url.decode("utf-8", "replace") != RETRY_INFO_TYPE_URL:
                continue
            for info_number, info_type, value in _fields(payload):
                if info_number == 1 and info_type == _LENGTH and isinstance(value, bytes):
                    delay = _duration_seconds(value)
                    return delay if delay >= 0 else None
            return None
    except _Malformed:
        return None
    return None
