"""Events between track() and the wire: argument checks, ids, protobuf conversion.

track() keeps only a tuple per event (`Record`); the worker turns records into
requests (uptake._wire), so the caller's thread never pays for protobuf or hashing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from random import getrandbits
from typing import Any

# (event_id, occurred_at_ms, tool, action, user_id, org_unit, feature, properties)
Record = tuple[
    bytes, int, str, str, str, str | None, str | None, tuple[tuple[str, str], ...] | None
]

MAX_USER_ID_CHARS = 256
MAX_ORG_UNIT_CHARS = 128
MAX_PROPERTIES = 32
_SLUG = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
# The 80 bits after the time: version (4 bits, 7), rand_a (12), variant (2 bits, 10),
# rand_b (62). Random bits everywhere but the version and the variant: 74 of them.
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_RANDOM_BITS = ((1 << 80) - 1) ^ (0xF << 76) ^ (0b11 << 62)


def uuid7(ms: int) -> bytes:
    """Return 16 bytes of a UUIDv7 (RFC 9562) for the given Unix time in milliseconds."""
    # The random module reseeds itself in a forked child, so parent and child never
    # draw the same ids; 74 random bits make a collision within one ms negligible.
    value = (ms << 80) | (getrandbits(80) & _RANDOM_BITS) | _VERSION_AND_VARIANT
    return value.to_bytes(16, "big")


def timestamp_ms(timestamp: object) -> int:
    """Return a timezone-aware datetime as integer milliseconds since the epoch (UTC)."""
    if not isinstance(timestamp, datetime):
        raise TypeError(f"timestamp must be a datetime, got {type(timestamp).__name__}")
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError(
            f"timestamp must be timezone-aware (for example datetime.now(timezone.utc)), "
            f"got naive {timestamp.isoformat()}"
        )
    return int(timestamp.timestamp() * 1000)


class SlugCache:
    """Remember slugs already checked, so the common case costs one set lookup."""

    def __init__(self, *, capacity: int = 4096) -> None:
        # Read directly on track()'s fast path: a set lookup, no method call.
        self.known: set[str] = set()
        self._capacity = capacity

    def check(self, name: str, value: object) -> None:
        """Raise TypeError or ValueError unless `value` is a lowercase slug."""
        if type(value) is not str:
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if value in self.known:
            return
        if not _SLUG.fullmatch(value):
            raise ValueError(
                f"{name} must be a lowercase slug of 1 to 64 characters (a-z, 0-9, '_', '-', "
                f"'.', starting with a letter), got {value!r}"
            )
        if len(self.known) < self._capacity:
            self.known.add(value)


def check_user_id(user_id: object) -> None:
    """Raise TypeError or ValueError unless `user_id` is an acceptable user id."""
    if type(user_id) is not str:
        raise TypeError(f"user_id must be a str, got {type(user_id).__name__}")
    if not user_id:
        raise ValueError("user_id must not be empty")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise ValueError(f"user_id must be at most {MAX_USER_ID_CHARS} characters")


def check_org_unit(org_unit: object) -> None:
    """Raise TypeError or ValueError unless `org_unit` is None or an acceptable unit."""
    if type(org_unit) is not str:
        raise TypeError(f"org_unit must be a str or None, got {type(org_unit).__name__}")
    if len(org_unit) > MAX_ORG_UNIT_CHARS:
        raise ValueError(
            f"org_unit must be at most {MAX_ORG_UNIT_CHARS} characters, got {len(org_unit)}"
        )


def freeze_properties(properties: object) -> tuple[tuple[str, str], ...]:
    """Return the properties as a tuple of (key, value) pairs, checking their types."""
    if not isinstance(properties, Mapping):
        raise TypeError(f"properties must be a mapping of str to str, got {type(properties)}")
    items: tuple[tuple[Any, Any], ...] = tuple(properties.items())
    if len(items) > MAX_PROPERTIES:
        raise ValueError(f"properties must have at most {MAX_PROPERTIES} entries, got {len(items)}")
    for key, value in items:
        if type(key) is not str or type(value) is not str:
            raise TypeError(
                f"properties must map str to str, got {type(key).__name__} key {key!r} "
                f"with a {type(value).__name__} value"
            )
    return items


class Pseudonymiser:
    """Replace raw user ids by HMAC-SHA256 pseudonyms before they leave the process."""

    def __init__(self, key: str) -> None:
        self._inner = hmac.new(key.encode(), digestmod=hashlib.sha256)

    def __call__(self, user_id: str) -> str:
        """Return the pseudonym: the hex of the first 16 bytes of HMAC-SHA256(key, id)."""
        mac = self._inner.copy()
        mac.update(user_id.encode())
        return mac.hexdigest()[:32]
