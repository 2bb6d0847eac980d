"""The channel: TLS and mutual TLS with real certificates, gzip measured on the wire."""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

import uptake
from tests.conftest import require_tool
from tests.sdk.fake_server import FakeServer

MakeClient = Callable[..., uptake.Client]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Make a CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    openssl = require_tool("openssl", install="apt-get install openssl")
    directory = tmp_path_factory.mktemp("tls")

    def run(command: str) -> None:
        subprocess.run(
            [openssl, *shlex.split(command)], cwd=directory, check=True, capture_output=True
        )

    run("req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=test CA' -keyout ca.key -out ca.pem")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run(f"req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}.key -out {name}.csr")
        run(
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
            f"-extfile san.ext -out {name}.pem"
        )
    return directory


def server_credentials(directory: Path, *, client_auth: bool) -> grpc.ServerCredentials:
    """Return TLS credentials of the server, requiring a client certificate if asked."""
    return grpc.ssl_server_credentials(
        [((directory / "server.key").read_bytes(), (directory / "server.pem").read_bytes())],
        root_certificates=(directory / "ca.pem").read_bytes() if client_auth else None,
        require_client_auth=client_auth,
    )


def test_tls_with_a_ca_file(certificates: Path, make_client: MakeClient) -> None:
    with FakeServer(credentials=server_credentials(certificates, client_auth=False)) as server:
        client = make_client(
            target=server.target, transport=None, ca_file=str(certificates / "ca.pem")
        )
        client.track("u", "view", tool="wiki")
        assert client.flush(10)
        assert len(server.stored) == 1


def test_tls_refuses_a_server_the_ca_did_not_sign(
    certificates: Path, tmp_path: Path, make_client: MakeClient
) -> None:
    with FakeServer(credentials=server_credentials(certificates, client_auth=False)) as server:
        # The system roots do not know the test CA: the handshake fails and nothing is sent.
        client = make_client(target=server.target, transport=None, tls=True, retry_initial=0.01)
        client.track("u", "view", tool="wiki")
        assert client.flush(1) is False
        assert not server.received


def test_mutual_tls(certificates: Path, make_client: MakeClient) -> None:
    with FakeServer(credentials=server_credentials(certificates, client_auth=True)) as server:
        client = make_client(
            target=server.target,
            transport=None,
            ca_file=str(certificates / "ca.pem"),
            cert_file=str(certificates / "client.pem"),
            key_file=str(certificates / "client.key"),
            api_key="k",
        )
        client.track("u", "view", tool="wiki")
        assert client.flush(10)
        assert server.received[0].metadata["authorization"] == "Bearer k"
        anonymous = make_client(
            target=server.target,
            transport=None,
            ca_file=str(certificates / "ca.pem"),
            retry_initial=0.01,
        )
        anonymous.track("u", "view", tool="wiki")
        assert anonymous.flush(1) is False  # no client certificate, no entry
        assert len(server.received) == 1


class CountingProxy:
    """Forward TCP connections to a target and count the bytes sent upstream."""

    def __init__(self, target_port: int) -> None:
        self.upstream_bytes = 0
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target_port))
            self._sockets += [downstream, upstream]
            self._spawn(self._pipe, downstream, upstream, True)
            self._spawn(self._pipe, upstream, downstream, False)

    def _pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    return
                sink.sendall(data)
            except OSError:
                return
            if count:
                with self._lock:
                    self.upstream_bytes += len(data)

    def close(self) -> None:
        """Close every socket and wait for the threads."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
            sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def proxy_pair() -> Iterator[tuple[FakeServer, CountingProxy]]:
    """A scripted server behind a byte-counting proxy."""
    with FakeServer() as server:
        proxy = CountingProxy(server.port)
        try:
            yield server, proxy
        finally:
            proxy.close()


@pytest.mark.parametrize("gzip", [True, False])
def test_gzip_shrinks_what_goes_on_the_wire(
    proxy_pair: tuple[FakeServer, CountingProxy], make_client: MakeClient, gzip: bool
) -> None:
    server, proxy = proxy_pair
    client = make_client(target=f"127.0.0.1:{proxy.port}", transport=None, gzip=gzip)
    for i in range(1000):
        client.track(f"user-{i}", "page_edit", tool="wiki", org_unit="engineering")
    assert client.flush(10)
    assert len(server.stored) == 1000
    payload = sum(r.request.ByteSize() for r in server.received)
    if gzip:
        assert proxy.upstream_bytes < payload / 3
    else:
        assert proxy.upstream_bytes > payload
