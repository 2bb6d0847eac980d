"""The /metrics HTTP endpoint, optionally behind TLS (and client certificates) and basic auth.

prometheus_client's own server offers TLS but no basic auth, and does the TLS
handshake on its accepting thread, where one silent client stalls every scrape.
This one hands each connection to its own thread before the handshake.

The basic-auth file holds ``user:password`` lines (the scraper needs the
password in clear anyway); passwords are compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from uptake_server.errors import ConfigError

log = logging.getLogger(__name__)

# A scrape that has not sent its request within this time is dropped.
CONNECTION_TIMEOUT_SECONDS = 10.0

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Handler(WSGIRequestHandler):
    timeout = CONNECTION_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        """Keep scrapes out of the log."""


class MetricsServer(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server; with TLS, each connection's handshake runs on its own thread."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; wrap it for TLS without doing the handshake here."""
        connection, address = super().get_request()
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed scrape in one line (a bad handshake is the client's problem)."""
        log.debug("metrics request from %s failed", client_address[0], exc_info=True)

    @property
    def scheme(self) -> str:
        """Return http or https."""
        return "https" if self.ssl_context is not None else "http"


def read_basic_auth(path: str, *, setting: str) -> dict[str, str]:
    """Return user -> password from a ``user:password`` file; raise ConfigError if unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the basic auth file {path} ({setting}): {exc}") from None
    users = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.strip().partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{path} ({setting}), line {number}: expected user:password")
        users[user] = password
    if not users:
        raise ConfigError(f"the basic auth file {path} ({setting}) holds no user:password line")
    return users


def basic_auth(app: WsgiApp, users: dict[str, str]) -> WsgiApp:
    """Wrap a WSGI app so that it answers 401 without valid basic-auth credentials."""
    expected = {user: password.encode() for user, password in users.items()}
    decoy = b"\0" * 32

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            user, password = "", ""
        wanted = expected.get(user)
        ok = hmac.compare_digest(password.encode(), wanted if wanted is not None else decoy)
        if scheme.lower() == "basic" and wanted is not None and ok:
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="uptake metrics"'), ("Content-Type", "text/plain")],
        )
        return [b"authentication required\n"]

    return guarded


def start_metrics_server(
    listen: str,
    registry: CollectorRegistry,
    *,
    ssl_context: ssl.SSLContext | None = None,
    users: dict[str, str] | None = None,
) -> MetricsServer:
    """Serve /metrics of a registry on host:port in a daemon thread; return the server."""
    host, _, port = listen.rpartition(":")
    app: WsgiApp = make_wsgi_app(registry)
    if users:
        app = basic_auth(app, users)

    class Server(MetricsServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(
        host.strip("[]"), int(port), app, server_class=Server, handler_class=_Handler
    )
    assert isinstance(server, MetricsServer)
    server.ssl_context = ssl_context
    threading.Thread(target=server.serve_forever, name="uptake-metrics", daemon=True).start()
    return server
