"""Client options: constructor argument, else an UPTAKE_* environment variable, else a default.

This is the only module of the SDK that reads os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from uptake._errors import ConfigurationError

DEFAULT_TARGET = "127.0.0.1:50051"
# The server accepts at most 10,000 events and 8 MiB per request (proto/uptake/v1).
MAX_EVENTS_PER_REQUEST = 10_000
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

Mode = Literal["background", "sync"]
OnFull = Literal["drop", "block"]


@dataclass(frozen=True, kw_only=True)
class Options:
    """Every setting of a client, resolved and checked."""

    target: str = field(default=DEFAULT_TARGET, metadata={"env": "UPTAKE_TARGET"})
    api_key: str | None = field(default=None, metadata={"env": "UPTAKE_API_KEY"})
    mode: Mode = field(default="background", metadata={"env": "UPTAKE_MODE"})
    batch_size: int = field(default=500, metadata={"env": "UPTAKE_BATCH_SIZE"})
    max_batch_bytes: int = field(
        default=4 * 1024 * 1024, metadata={"env": "UPTAKE_MAX_BATCH_BYTES"}
    )
    flush_interval: float = field(default=1.0, metadata={"env": "UPTAKE_FLUSH_INTERVAL_SECONDS"})
    max_queue_size: int = field(default=10_000, metadata={"env": "UPTAKE_MAX_QUEUE_SIZE"})
    on_full: OnFull = field(default="drop", metadata={"env": "UPTAKE_ON_FULL"})
    block_timeout: float = field(default=1.0, metadata={"env": "UPTAKE_BLOCK_TIMEOUT_SECONDS"})
    request_timeout: float = field(default=10.0, metadata={"env": "UPTAKE_REQUEST_TIMEOUT_SECONDS"})
    retry_initial: float = field(default=0.5, metadata={"env": "UPTAKE_RETRY_INITIAL_SECONDS"})
    retry_max: float = field(default=30.0, metadata={"env": "UPTAKE_RETRY_MAX_SECONDS"})
    retry_max_elapsed: float = field(
        default=600.0, metadata={"env": "UPTAKE_RETRY_MAX_ELAPSED_SECONDS"}
    )
    gzip: bool = field(default=True, metadata={"env": "UPTAKE_GZIP"})
    tls: bool = field(default=False, metadata={"env": "UPTAKE_TLS"})
    ca_file: str | None = field(default=None, metadata={"env": "UPTAKE_TLS_CA_FILE"})
    cert_file: str | None = field(default=None, metadata={"env": "UPTAKE_TLS_CERT_FILE"})
    key_file: str | None = field(default=None, metadata={"env": "UPTAKE_TLS_KEY_FILE"})
    spool_dir: str | None = field(default=None, metadata={"env": "UPTAKE_SPOOL_DIR"})
    spool_max_bytes: int = field(
        default=64 * 1024 * 1024, metadata={"env": "UPTAKE_SPOOL_MAX_BYTES"}
    )
    pseudonym_key: str | None = field(default=None, metadata={"env": "UPTAKE_SOURCE_PSEUDONYM_KEY"})
    strict: bool = field(default=True, metadata={"env": "UPTAKE_STRICT"})
    atexit_timeout: float = field(default=2.0, metadata={"env": "UPTAKE_ATEXIT_TIMEOUT_SECONDS"})

    @property
    def secure(self) -> bool:
        """Tell whether the channel uses TLS (asked for, or implied by a certificate file)."""
        return self.tls or any((self.ca_file, self.cert_file, self.key_file))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("background", "sync"),
    "on_full": ("drop", "block"),
}


def _from_env(name: str, env: str, kind: Any, raw: str) -> object:
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
    except ValueError:
        expected = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        raise ConfigurationError(f"{env}={raw!r} is invalid: {name} must be {expected}") from None
    return text or None


_KINDS: dict[str, Any] = {
    "batch_size": int,
    "max_batch_bytes": int,
    "max_queue_size": int,
    "spool_max_bytes": int,
    "flush_interval": float,
    "block_timeout": float,
    "request_timeout": float,
    "retry_initial": float,
    "retry_max": float,
    "retry_max_elapsed": float,
    "atexit_timeout": float,
    "gzip": bool,
    "tls": bool,
    "strict": bool,
}


def resolve(arguments: Mapping[str, object], environ: Mapping[str, str] | None = None) -> Options:
    """Build Options from explicit arguments (None means unset), then UPTAKE_* variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for spec in fields(Options):
        value = arguments.get(spec.name)
        env = spec.metadata["env"]
        if value is None and environ.get(env, "").strip():
            value = _from_env(spec.name, env, _KINDS.get(spec.name, str), environ[env])
            _check(spec.name, value, source=f"{env}={environ[env]!r}")
        elif value is not None:
            _check(spec.name, value, source=f"{spec.name}={value!r}")
        if value is not None:
            values[spec.name] = value
    options = Options(**values)  # type: ignore[arg-type]
    _check_together(options)
    return options


_POSITIVE = {
    "batch_size",
    "max_batch_bytes",
    "max_queue_size",
    "spool_max_bytes",
    "flush_interval",
    "request_timeout",
    "retry_initial",
    "retry_max",
}
_NOT_NEGATIVE = {"block_timeout", "retry_max_elapsed", "atexit_timeout"}


def _check(name: str, value: object, *, source: str) -> None:
    kind = _KINDS.get(name, str)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        expected = {bool: "a bool", int: "an int", float: "a number", str: "a str"}[kind]
        raise ConfigurationError(f"{source} is invalid: {name} must be {expected}")
    if name in _CHOICES and value not in _CHOICES[name]:
        allowed = " or ".join(repr(c) for c in _CHOICES[name])
        raise ConfigurationError(f"{source} is invalid: {name} must be {allowed}")
    if name in _POSITIVE and not value > 0:  # type: ignore[operator]
        raise ConfigurationError(f"{source} is invalid: {name} must be greater than 0")
    if name in _NOT_NEGATIVE and value < 0:  # type: ignore[operator]
        raise ConfigurationError(f"{source} is invalid: {name} must not be negative")
    if name == "batch_size" and value > MAX_EVENTS_PER_REQUEST:  # type: ignore[operator]
        raise ConfigurationError(
            f"{source} is invalid: batch_size must be at most {MAX_EVENTS_PER_REQUEST:,}, "
            "the server's limit of events per request"
        )
    if name == "max_batch_bytes" and value > MAX_MESSAGE_BYTES:  # type: ignore[operator]
        raise ConfigurationError(
            f"{source} is invalid: max_batch_bytes must be at most {MAX_MESSAGE_BYTES:,}, "
            "the server's message limit"
        )
    if name == "target" and not str(value).strip():
        raise ConfigurationError(f"{source} is invalid: target must not be empty")
    if name == "pseudonym_key" and len(str(value).encode()) < 16:
        raise ConfigurationError(
            "the source pseudonym key (pseudonym_key or UPTAKE_SOURCE_PSEUDONYM_KEY) "
            "must be at least 16 bytes"
        )


def _check_together(options: Options) -> None:
    if options.retry_max < options.retry_initial:
        raise ConfigurationError(
            f"retry_max ({options.retry_max}) must not be below "
            f"retry_initial ({options.retry_initial})"
        )
    if (options.cert_file is None) != (options.key_file is None):
        raise ConfigurationError(
            "cert_file and key_file (UPTAKE_TLS_CERT_FILE, UPTAKE_TLS_KEY_FILE) "
            "go together: give both for mutual TLS, or neither"
        )
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(options, name)
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(f"{name}={path!r} is not a readable file")
