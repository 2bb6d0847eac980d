"""TLS for the gRPC port and the metrics endpoint, with certificates that may be rotated.

The gRPC server re-reads its certificate, key and client CA when the files change
(checked before a new connection's handshake, at most once a second), so a
certificate renewed by cert-manager or a Secret update takes effect without a
restart. A client CA file turns on mutual TLS: clients without a certificate it
signed are refused during the handshake.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc

from uptake_server.errors import ConfigError

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """Certificate chain, private key and optional client CA, with the settings that name them."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    settings: tuple[str, str, str] = ("cert", "key", "client CA")

    @property
    def paths(self) -> tuple[str, ...]:
        """Return the files in use."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """Return the PEM contents; raise ConfigError naming a file that cannot be read."""
        contents: list[bytes | None] = []
        for path, setting in zip(
            (self.cert_file, self.key_file, self.client_ca_file), self.settings, strict=True
        ):
            if not path:
                contents.append(None)
                continue
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path} ({setting}): {exc.strerror}") from None
            if b"-----BEGIN" not in data:
                raise ConfigError(f"{path} ({setting}) is not a PEM file")
            contents.append(data)
        cert, key, ca = contents
        assert cert is not None and key is not None  # both are required by the settings
        return cert, key, ca


def tls_files(
    cert_file: str, key_file: str, client_ca_file: str, *, settings: tuple[str, str, str]
) -> TlsFiles | None:
    """Return the TLS files when configured, None for plaintext; check that they go together."""
    cert_env, key_env, ca_env = settings
    if not cert_file and not key_file:
        if client_ca_file:
            raise ConfigError(f"{ca_env} needs {cert_env} and {key_env}: mutual TLS is TLS first")
        return None
    if not cert_file or not key_file:
        raise ConfigError(f"{cert_env} and {key_env} go together: give both for TLS, or neither")
    files = TlsFiles(
        cert_file=cert_file, key_file=key_file, client_ca_file=client_ca_file, settings=settings
    )
    files.read()
    return files


def grpc_server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Return gRPC server credentials that follow changes of the files."""
    watcher = _Watcher(files)
    # gRPC takes None from the fetcher as "no change"; its type stubs do not say so.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], watcher.changed)
    return grpc.dynamic_ssl_server_credentials(
        watcher.configuration(),
        fetcher,
        require_client_authentication=bool(files.client_ca_file),
    )


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """Return an SSL context for an HTTPS server (client certificates required with a CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
        if files.client_ca_file:
            context.load_verify_locations(cafile=files.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the certificate {files.cert_file} with the key {files.key_file}: {exc}"
        ) from None
    return context


class _Watcher:
    """Hand gRPC a new certificate configuration when the files changed."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[tuple[int, int], ...]:
        signature = []
        for path in self._files.paths:
            try:
                status = os.stat(path)
            except OSError:
                return ()
            signature.append((status.st_mtime_ns, status.st_size))
        return tuple(signature)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self._files.read()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def changed(self) -> grpc.ServerCertificateConfiguration | None:
        """Return a new configuration when the files changed, else None (keep the current)."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return None
            self._checked = now
            signature = self._stat()
            if not signature or signature == self._signature:
                return None
            self._signature = signature
        try:
            configuration = self.configuration()
        except ConfigError as exc:  # a half-written rotation: keep serving the old certificate
            log.error("keeping the current TLS certificate: %s", exc)
            return None
        log.info("TLS certificate reloaded from %s", self._files.cert_file)
        return configuration
