"""Pseudonymise user ids with a keyed hash before anything is written.

The pseudonym is the first 16 bytes of HMAC-SHA256(key, user_id as UTF-8):
stable for one key (so distinct-user KPIs work), not reversible without the
key, and 128 bits, so collisions are negligible at any realistic user count.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from uptake_server.config import Settings, env_name
from uptake_server.errors import ConfigError

PSEUDONYM_BYTES = 16
MIN_KEY_BYTES = 16
DEV_KEY_FILE = "pseudonym.key"
# Pseudonyms remembered in memory: about 150 bytes each, so at most ~15 MB.
CACHE_SIZE = 100_000

log = logging.getLogger(__name__)


class Pseudonymiser:
    """Map raw user ids to pseudonyms with HMAC-SHA256 under one secret key."""

    def __init__(self, key: bytes, *, cache_size: int = CACHE_SIZE) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        # HMAC's inner and outer states depend on the key only: prepare them
        # once and copy per call, which is about twice as fast as hmac.new().
        self._inner = hmac.new(key, digestmod=hashlib.sha256)
        # The same people send most events, and a dictionary hit costs a
        # twentieth of an HMAC. Memory only, never written; cleared when full.
        self._cache: dict[str, bytes] = {}
        self._cache_size = cache_size

    def __call__(self, user_id: str) -> bytes:
        """Return the 16-byte pseudonym of a user id."""
        pseudonym = self._cache.get(user_id)
        if pseudonym is None:
            mac = self._inner.copy()
            mac.update(user_id.encode())
            pseudonym = mac.digest()[:PSEUDONYM_BYTES]
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[user_id] = pseudonym
        return pseudonym


def load_key(settings: Settings) -> bytes:
    """Return the pseudonym key from the settings, a key file or (dev mode) the data dir."""
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    if settings.pseudonym_key_file:
        path = Path(settings.pseudonym_key_file)
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the pseudonym key file {path} "
                f"({env_name('pseudonym_key_file')}): {exc.strerror}"
            ) from None
        if not key:
            raise ConfigError(f"the pseudonym key file {path} is empty")
        return key
    if settings.dev:
        return _dev_key(settings.data_path / DEV_KEY_FILE)
    raise ConfigError(
        f"no pseudonym key: set {env_name('pseudonym_key')} or "
        f"{env_name('pseudonym_key_file')} (at least {MIN_KEY_BYTES} bytes), "
        "or run with --dev to generate a local one"
    )


def _dev_key(path: Path) -> bytes:
    if path.exists():
        log.warning("dev mode: using the pseudonym key kept in %s", path)
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    log.warning(
        "dev mode: generated a pseudonym key and kept it in %s; "
        "keep it secret and keep it: a new key gives every user a new pseudonym",
        path,
    )
    return key
