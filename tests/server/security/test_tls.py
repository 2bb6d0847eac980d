"""TLS and mutual TLS on the gRPC port, certificate rotation, and the guarded metrics endpoint."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

import uptake
from tests.server.security.conftest import call_ingest
from tests.server.security.pki import Authority, authority
from tests.server.test_service import event, settings_for
from uptake.v1 import ingest_pb2
from uptake_server.app import Service
from uptake_server.errors import ConfigError
from uptake_server.kpi.exporter import KpiService


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Authority]:
    directory = tmp_path_factory.mktemp("pki")
    return {name: authority(directory, name) for name in ("uptake", "rogue", "next")}


def channel_to(service: Service, ca: Path, cert: tuple[Path, Path] | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=cert[1].read_bytes() if cert else None,
        certificate_chain=cert[0].read_bytes() if cert else None,
    )
    return grpc.secure_channel(service.grpc_target, credentials)


def ingest_over(channel: grpc.Channel) -> grpc.StatusCode:
    with channel:
        return call_ingest(channel, ingest_pb2.IngestRequest(events=[event()]), timeout=5).code


def test_mutual_tls_on_grpc_and_a_guarded_metrics_endpoint(
    pki: dict[str, Authority], tmp_path: Path
) -> None:
    uptake_ca, rogue = pki["uptake"], pki["rogue"]
    server_cert, server_key = uptake_ca.issue("server")
    client = uptake_ca.issue("client")
    scraper = uptake_ca.issue("scraper")
    users = tmp_path / "metrics-users"
    users.write_text("# scrapers\nprometheus:s3cret:with:colons\n")
    service = Service(
        settings_for(
            tmp_path / "var",
            tls_cert_file=str(server_cert),
            tls_key_file=str(server_key),
            tls_client_ca_file=str(uptake_ca.ca),
            metrics_tls_cert_file=str(server_cert),
            metrics_tls_key_file=str(server_key),
            metrics_tls_client_ca_file=str(uptake_ca.ca),
            metrics_basic_auth_file=str(users),
        )
    )
    service.start()
    try:
        # The SDK with the client certificate delivers.
        sdk = uptake.Client(
            service.grpc_target,
            ca_file=str(uptake_ca.ca),
            cert_file=str(client[0]),
            key_file=str(client[1]),
            flush_interval=0.05,
        )
        sdk.track("u1", "view", tool="wiki")
        assert sdk.flush(20) and sdk.close(5)
        # No client certificate, one the CA did not sign, or no TLS at all: refused.
        assert ingest_over(channel_to(service, uptake_ca.ca)) == grpc.StatusCode.UNAVAILABLE
        rogue_client = rogue.issue("rogue-client")
        refused = ingest_over(channel_to(service, uptake_ca.ca, rogue_client))
        assert refused == grpc.StatusCode.UNAVAILABLE
        plain = ingest_over(grpc.insecure_channel(service.grpc_target))
        assert plain == grpc.StatusCode.UNAVAILABLE

        assert service.metrics_url.startswith("https://")
        assert scrape_status(service.metrics_url, uptake_ca.ca, scraper, None) == 401
        wrong = ("prometheus", "guess")
        assert scrape_status(service.metrics_url, uptake_ca.ca, scraper, wrong) == 401
        right = ("prometheus", "s3cret:with:colons")
        assert scrape_status(service.metrics_url, uptake_ca.ca, scraper, right) == 200
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            scrape_status(service.metrics_url, uptake_ca.ca, None, right)
    finally:
        service.stop()


def scrape_status(
    url: str, ca: Path, cert: tuple[Path, Path] | None, credentials: tuple[str, str] | None
) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            assert b"uptake_build_info" in reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_a_rotated_certificate_is_served_without_a_restart(
    pki: dict[str, Authority], tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    for source, target in zip(pki["uptake"].issue("first"), (cert, key), strict=True):
        shutil.copy(source, target)
    service = Service(
        settings_for(tmp_path / "var", tls_cert_file=str(cert), tls_key_file=str(key))
    )
    service.start()
    try:
        assert ingest_over(channel_to(service, pki["uptake"].ca)) == grpc.StatusCode.OK
        assert ingest_over(channel_to(service, pki["next"].ca)) == grpc.StatusCode.UNAVAILABLE
        # What cert-manager does: new files from another CA, swapped in place.
        for source, target in zip(pki["next"].issue("second"), (cert, key), strict=True):
            shutil.copy(source, target.with_suffix(".new"))
            os.replace(target.with_suffix(".new"), target)
        deadline = time.monotonic() + 10
        code = grpc.StatusCode.UNAVAILABLE
        while code != grpc.StatusCode.OK and time.monotonic() < deadline:
            time.sleep(0.3)
            code = ingest_over(channel_to(service, pki["next"].ca))
        assert code == grpc.StatusCode.OK
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tls_cert_file": "a.pem"}, "UPTAKE_TLS_CERT_FILE and UPTAKE_TLS_KEY_FILE go together"),
        ({"tls_client_ca_file": "ca.pem"}, "UPTAKE_TLS_CLIENT_CA_FILE needs UPTAKE_TLS_CERT_FILE"),
        (
            {"tls_cert_file": "/nowhere.pem", "tls_key_file": "/nowhere.key"},
            "cannot read /nowhere.pem (UPTAKE_TLS_CERT_FILE)",
        ),
        (
            {"metrics_tls_key_file": "k.pem"},
            "UPTAKE_METRICS_TLS_CERT_FILE and UPTAKE_METRICS_TLS_KEY_FILE go together",
        ),
        ({"metrics_basic_auth_file": "/nowhere"}, "cannot read the basic auth file /nowhere"),
    ],
)
def test_tls_settings_that_cannot_work_are_named(
    settings: dict[str, str], message: str, tmp_path: Path
) -> None:
    service = None
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
        service = Service(settings_for(tmp_path / "var", **settings))
        service.start()
    if service is not None:
        service.stop()


def test_the_kpi_role_guards_its_metrics_endpoint_too(tmp_path: Path) -> None:
    users = tmp_path / "metrics-users"
    users.write_text("prometheus:pw\n")
    service = KpiService(settings_for(tmp_path / "var", metrics_basic_auth_file=str(users)))
    service.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(service.metrics_url, timeout=10)
        refused.value.close()
        assert refused.value.code == 401
        request = urllib.request.Request(service.metrics_url)
        request.add_header("Authorization", "Basic " + base64.b64encode(b"prometheus:pw").decode())
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
    finally:
        service.stop()
