"""The API keys file on disk: read at start, re-read when it changes, edited atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from uptake_server.errors import ConfigError
from uptake_server.security.keys import (
    DEFAULT_PERMISSIONS,
    ApiKey,
    KeySet,
    check_permissions,
    check_tools,
    new_key,
    parse_keys,
)

log = logging.getLogger(__name__)

# How often the file's status is compared with what was loaded: a revoked key
# stops working within this time, also when a Kubernetes Secret is updated.
RELOAD_CHECK_SECONDS = 1.0


class KeyFile:
    """One keys file: the current keys, reloaded on change, and atomic edits."""

    def __init__(
        self, path: str | Path, *, setting: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = Path(path)
        self._setting = setting
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = clock()
        self._signature: tuple[int, int, int] | None = None
        self._keys = KeySet([])

    def load(self) -> KeySet:
        """Read the file now; raise ConfigError when it is missing or invalid."""
        signature = self._stat()
        if signature is None:
            raise ConfigError(
                f"the API keys file {self.path} ({self._setting}) does not exist; "
                "create a key with: uptake-server keys create --name NAME --tool TOOL"
            )
        keys = self._read()
        with self._lock:
            self._keys, self._signature, self._checked = keys, signature, self._clock()
        return keys

    def current(self) -> KeySet:
        """Return the keys, re-reading the file when it changed (checked once a second)."""
        now = self._clock()
        with self._lock:
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return self._keys
            self._checked = now
            signature = self._stat()
            if signature is None or signature == self._signature:
                return self._keys
            try:
                keys = self._read()
            except ConfigError as exc:
                # Fail static: a broken edit must not lock every tool out.
                log.error("keeping the %d API keys loaded before: %s", len(self._keys), exc)
                self._signature = signature
                return self._keys
            self._keys, self._signature = keys, signature
        log.info("API keys file reloaded: %d keys", len(keys))
        return keys

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino

    def _read(self) -> KeySet:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the API keys file {self.path}: {exc}") from None
        return parse_keys(text, source=str(self.path))

    def create(
        self,
        *,
        name: str,
        tools: list[str],
        events_per_second: float | None = None,
        permissions: list[str] | None = None,
    ) -> tuple[str, ApiKey]:
        """Add a new key to the file (created if missing); return the key and its entry."""
        scope = check_tools(tools)
        granted = DEFAULT_PERMISSIONS if permissions is None else check_permissions(permissions)
        if events_per_second is not None and events_per_second <= 0:
            raise ConfigError("events per second must be greater than 0")
        with self._edit() as keys:
            key, key_id, digest = new_key()
            while key_id in keys.keys:
                key, key_id, digest = new_key()
            entry = ApiKey(
                id=key_id,
                name=name,
                tools=scope,
                sha256=digest,
                created_at=_now(),
                events_per_second=events_per_second,
                permissions=granted,
            )
            keys.keys[key_id] = entry
        return key, entry

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (kept in the file, so `list` still shows it); return it."""
        with self._edit() as keys:
            entry = keys.keys.get(key_id)
            if entry is None:
                raise ConfigError(f"no key with id {key_id!r} in {self.path}")
            if entry.revoked_at is None:
                entry = dataclasses.replace(entry, revoked_at=_now())
                keys.keys[key_id] = entry
        return entry

    @contextlib.contextmanager
    def _edit(self) -> Iterator[KeySet]:
        """Lock the directory, yield the keys, then replace the file atomically (mode 0600)."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            keys = self._read() if self.path.exists() else KeySet([])
            yield keys
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, renamed after)
                "w", dir=directory, prefix=f".{self.path.name}.", delete=False, encoding="utf-8"
            )
            try:
                with handle:
                    os.chmod(handle.name, 0o600)
                    handle.write(keys.to_yaml())
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(handle.name, self.path)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
        finally:
            os.close(fd)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
