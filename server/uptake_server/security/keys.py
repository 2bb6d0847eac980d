"""API keys: scoped to tools, kept only as SHA-256 hashes in a YAML keys file.

A key reads ``uptake_<id>_<secret>``: the id (12 hex digits) is public and names
the entry, the secret is 32 random bytes in URL-safe base64. A key has 256 bits
of entropy, so a plain SHA-256 is enough to keep it from being read back out of
the file (a slow password hash protects guessable secrets; these are not).

The file, written by ``uptake-server keys create``::

    keys:
    - id: 3f9a0c1e2b4d
      name: wiki-production
      tools: [wiki]              # or ["*"] for every tool
      sha256: 9f86d081884c7d65...
      created_at: '2026-11-01T10:00:00Z'
      revoked_at: null
      events_per_second: null    # optional; overrides the server-wide rate limit
      permissions: [ingest]      # ingest, activities (ActivityService); absent: [ingest]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from uptake_server.errors import ConfigError

KEY_PREFIX = "uptake"
ALL_TOOLS = "*"
INGEST = "ingest"
ACTIVITIES = "activities"
PERMISSIONS = (INGEST, ACTIVITIES)
# Keys written before permissions existed may only send events.
DEFAULT_PERMISSIONS = frozenset({INGEST})
_KEY = re.compile(r"uptake_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_ID = re.compile(r"[0-9a-f]{12}")
_HASH = re.compile(r"[0-9a-f]{64}")
_SLUG = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
# Compared against when the id is unknown, so an unknown id costs what a wrong secret costs.
_DECOY = hashlib.sha256(b"uptake decoy key").digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One entry of the keys file (the key itself is never kept)."""

    id: str
    name: str
    tools: frozenset[str]
    sha256: str
    created_at: str
    revoked_at: str | None = None
    events_per_second: float | None = None
    permissions: frozenset[str] = DEFAULT_PERMISSIONS
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", bytes.fromhex(self.sha256))

    @property
    def all_tools(self) -> bool:
        """Tell whether the key may write events of every tool."""
        return ALL_TOOLS in self.tools

    def may_write(self, tool: str) -> bool:
        """Tell whether the key may write events of this tool."""
        return tool in self.tools or ALL_TOOLS in self.tools

    def as_entry(self) -> dict[str, Any]:
        """Return the entry as it is written to the keys file."""
        return {
            "id": self.id,
            "name": self.name,
            "tools": sorted(self.tools),
            "sha256": self.sha256,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "events_per_second": self.events_per_second,
            "permissions": [p for p in PERMISSIONS if p in self.permissions],
        }


def new_key() -> tuple[str, str, str]:
    """Return a fresh key with its id and the hex SHA-256 to store."""
    key_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    key = f"{KEY_PREFIX}_{key_id}_{secret}"
    return key, key_id, hashlib.sha256(key.encode()).hexdigest()


def check_permissions(permissions: Sequence[str]) -> frozenset[str]:
    """Return the permissions, or raise ConfigError naming one that does not exist."""
    if not permissions:
        raise ConfigError(f"a key needs at least one permission ({', '.join(PERMISSIONS)})")
    for permission in permissions:
        if permission not in PERMISSIONS:
            raise ConfigError(f"unknown permission {permission!r}: use {' or '.join(PERMISSIONS)}")
    return frozenset(permissions)


def check_tools(tools: Sequence[str]) -> frozenset[str]:
    """Return the tool scope, or raise ConfigError naming a tool that is not a slug."""
    if not tools:
        raise ConfigError("a key needs at least one tool (or '*' for every tool)")
    for tool in tools:
        if tool != ALL_TOOLS and not _SLUG.fullmatch(tool):
            raise ConfigError(
                f"tool {tool!r} is not a lowercase slug (a letter, then a-z, 0-9, '_', '-', "
                "'.', at most 64 characters) nor '*'"
            )
    return frozenset(tools)


class KeySet:
    """The keys of one keys file, looked up by id and checked in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys: dict[str, ApiKey] = {}
        for key in keys:
            self.keys[key.id] = key

    def __len__(self) -> int:
        return len(self.keys)

    def verify(self, presented: str) -> ApiKey | None:
        """Return the live key matching a presented key, else None (whatever was wrong)."""
        match = _KEY.fullmatch(presented)
        if match is None:
            return None
        entry = self.keys.get(match.group(1))
        digest = hashlib.sha256(presented.encode()).digest()
        ok = hmac.compare_digest(digest, entry.digest if entry is not None else _DECOY)
        if entry is None or not ok or entry.revoked_at is not None:
            return None
        return entry

    def to_yaml(self) -> str:
        """Return the keys file text."""
        body = yaml.safe_dump(
            {"keys": [key.as_entry() for key in self.keys.values()]},
            sort_keys=False,
            default_flow_style=None,
        )
        return (
            "# Uptake API keys: only a SHA-256 hash of each key is kept here.\n"
            "# Manage with: uptake-server keys create | list | revoke\n" + body
        )


def parse_keys(text: str, *, source: str) -> KeySet:
    """Parse a keys file; raise ConfigError naming the file and the bad entry."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the API keys file {source} is not valid YAML: {exc}") from None
    if document is None:
        return KeySet([])
    if not isinstance(document, Mapping) or not isinstance(document.get("keys", []), list):
        raise ConfigError(f"the API keys file {source} must hold a mapping with a 'keys' list")
    keys = []
    seen: set[str] = set()
    for index, entry in enumerate(document.get("keys") or []):
        where = f"the API keys file {source}, keys[{index}]"
        key = _parse_entry(entry, where)
        if key.id in seen:
            raise ConfigError(f"{where}: the id {key.id} appears twice")
        seen.add(key.id)
        keys.append(key)
    return KeySet(keys)


def _parse_entry(entry: object, where: str) -> ApiKey:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping")

    def text(name: str, pattern: re.Pattern[str]) -> str:
        value = entry.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ConfigError(f"{where}: {name} is missing or malformed")
        return value

    def names(
        name: str, what: str, check: Callable[[Sequence[str]], frozenset[str]]
    ) -> frozenset[str]:
        values = entry.get(name)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: {name} must be a list of {what} names")
        try:
            return check(values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    scope = names("tools", "tool", check_tools)
    rate = entry.get("events_per_second")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
    ):
        raise ConfigError(f"{where}: events_per_second must be a number greater than 0")
    permissions = DEFAULT_PERMISSIONS
    if entry.get("permissions") is not None:
        permissions = names("permissions", "permission", check_permissions)
    return ApiKey(
        id=text("id", _ID),
        name=str(entry.get("name") or ""),
        tools=scope,
        sha256=text("sha256", _HASH),
        created_at=str(entry.get("created_at") or ""),
        # A hand-edited, unquoted timestamp arrives as a datetime: keep it as text.
        revoked_at=str(entry["revoked_at"]) if entry.get("revoked_at") is not None else None,
        events_per_second=float(rate) if rate is not None else None,
        permissions=permissions,
    )
