"""Say where an IngestRequest that protobuf refused to decode is broken.

protobuf only reports "String field had bad UTF-8" or "Wire format was corrupt".
This walker runs only after such a failure and names the field, for example
``events[3].user_id is not valid UTF-8``, so a client author can fix the encoder.
"""

from __future__ import annotations

from typing import NamedTuple

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5


class _Shape(NamedTuple):
    """A message's string fields, message fields (with their shapes) and repeated fields."""

    strings: dict[int, str]
    messages: dict[int, tuple[str, _Shape]]
    repeated: frozenset[int]


_EVENT = _Shape(
    {
        3: "tool",
        4: "action",
        5: "user_id",
        6: "org_unit",
        7: "feature",
        8: "client",
        9: "property_keys",
        10: "property_values",
    },
    {},
    frozenset({9, 10}),
)
# Columns name their fields as Event does; the properties come after their counts.
_COLUMNS = _Shape(
    {number: name for number, name in _EVENT.strings.items() if number < 9}
    | {10: "property_keys", 11: "property_values"},
    {},
    frozenset(range(1, 12)),
)
_REQUEST = _Shape(
    {1: "batch_id"}, {2: ("events", _EVENT), 4: ("columns", _COLUMNS)}, frozenset({2})
)


class _Broken(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def diagnose(data: bytes) -> tuple[str, str]:
    """Return (field, problem) for a request protobuf could not decode."""
    try:
        _walk(data, "", _REQUEST)
    except _Broken as broken:
        return broken.field, broken.problem
    return "", "the request is not a valid uptake.v1.IngestRequest"


def _varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise _Broken(where or "request", f"{where or 'the request'} has a truncated varint")


def _walk(data: bytes, prefix: str, shape: _Shape, depth: int = 0) -> None:
    strings, messages = shape.strings, shape.messages
    counts: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        where = prefix.rstrip(".") or "request"
        key, pos = _varint(data, pos, prefix.rstrip("."))
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _Broken(where, f"{where} has a field numbered 0, which protobuf forbids")
        if wire_type > _I32:
            raise _Broken(
                where,
                f"{where} has field {number} with wire type {wire_type}, which does not exist",
            )
        name = strings.get(number) or messages.get(number, (f"field {number}",))[0]
        index = counts.get(number, 0)
        counts[number] = index + 1
        field = f"{prefix}{name}[{index}]" if number in shape.repeated else f"{prefix}{name}"
        if wire_type == _VARINT:
            _, pos = _varint(data, pos, field)
        elif wire_type in (_I64, _I32):
            pos += 8 if wire_type == _I64 else 4
        elif wire_type == _LEN:
            size, pos = _varint(data, pos, field)
            if pos + size > len(data):
                raise _Broken(field, f"{field} is truncated: {size} bytes announced")
            value = data[pos : pos + size]
            pos += size
            if number in strings:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _Broken(
                        field, f"{field} is not valid UTF-8 (byte {exc.start} of {size})"
                    ) from None
            elif number in messages:
                _walk(value, f"{field}.", messages[number][1], depth + 1)
        elif depth > 50 or wire_type == _EGROUP:
            raise _Broken(field, f"{field} is a group that is unbalanced or nested too deeply")
        else:
            pos = _skip_group(data, pos, field, depth)
        if pos > len(data):
            raise _Broken(field, f"{field} is truncated")


def _skip_group(data: bytes, pos: int, field: str, depth: int) -> int:
    nesting = 1
    while pos < len(data):
        key, pos = _varint(data, pos, field)
        wire_type = key & 7
        if wire_type == _SGROUP:
            nesting += 1
            if nesting + depth > 50:
                break
        elif wire_type == _EGROUP:
            nesting -= 1
            if nesting == 0:
                return pos
        elif wire_type == _VARINT:
            _, pos = _varint(data, pos, field)
        elif wire_type == _LEN:
            size, pos = _varint(data, pos, field)
            pos += size
        elif wire_type in (_I64, _I32):
            pos += 8 if wire_type == _I64 else 4
        else:
            break
    raise _Broken(field, f"{field} is a group that is unbalanced or nested too deeply")
