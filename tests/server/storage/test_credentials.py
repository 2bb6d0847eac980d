"""Credentials and TLS reach ClickHouse and never its logs; storage settings are validated."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.support.clickhouse_http import ClickHouseHTTP
from uptake_server.config import load_settings
from uptake_server.errors import ConfigError, StoreError
from uptake_server.store import open_store, schema_context

SECRET = "s3cret-Pa55"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTP]:
    """An HTTP fixture that requires a password."""
    fixture = ClickHouseHTTP(tmp_path_factory.mktemp("guarded") / "data", password=SECRET)
    yield fixture
    fixture.stop()


def settings_for(dsn: str, **values: object) -> object:
    return load_settings({"store_dsn": dsn, **values}, environ={})


@pytest.mark.parametrize(
    "source",
    ["file", "environment", "dsn", "file over environment"],
)
def test_the_password_comes_from_file_environment_or_dsn(
    source: str, guarded: ClickHouseHTTP, tmp_path: Path
) -> None:
    dsn = f"{guarded.url.replace('://', '://default@')}/creds"
    password_file = tmp_path / "password"
    password_file.write_text(f"{SECRET}\n")
    environ = {"UPTAKE_STORE_DSN": dsn}
    if source == "file":
        environ["UPTAKE_STORE_PASSWORD_FILE"] = str(password_file)
    elif source == "environment":
        environ["UPTAKE_STORE_PASSWORD"] = SECRET
    elif source == "dsn":
        environ["UPTAKE_STORE_DSN"] = dsn.replace("default@", f"default:{SECRET}@")
    else:
        environ["UPTAKE_STORE_PASSWORD_FILE"] = str(password_file)
        environ["UPTAKE_STORE_PASSWORD"] = "wrong"
    settings = load_settings(environ=environ)
    assert SECRET not in repr(settings) or source == "dsn"
    store = open_store(settings)
    try:
        store.ensure_database(schema_context(settings))
        assert store.ping()
        assert SECRET not in store.describe()
    finally:
        store.close()


def test_a_wrong_password_is_refused_without_showing_it(
    guarded: ClickHouseHTTP, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = f"{guarded.url.replace('://', '://default:not-it@')}/creds"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError, match="Authentication failed") as info:
        open_store(load_settings({"store_dsn": dsn}, environ={}))
    assert "not-it" not in str(info.value)
    assert "not-it" not in caplog.text


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = require_tool("openssl", install="apt-get install openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_with_a_private_ca(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    fixture = ClickHouseHTTP(tmp_path / "data", tls=certificate)
    try:
        dsn = f"{fixture.url.replace('://', '://default@')}/tls"
        with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
            open_store(load_settings({"store_dsn": dsn}, environ={}))
        settings = load_settings(
            {"store_dsn": dsn, "store_ca_file": str(certificate[0])}, environ={}
        )
        store = open_store(settings)
        try:
            store.migrate(schema_context(settings))
            assert store.query("SELECT count() FROM events") == [(0,)]
        finally:
            store.close()
    finally:
        fixture.stop()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cluster": "bad name"}, "setting cluster (UPTAKE_CLUSTER) must be a cluster name"),
        ({"insert_quorum": 2}, "insert_quorum (UPTAKE_INSERT_QUORUM) needs a replicated cluster"),
        (
            {"retention_days": 500, "aggregate_retention_days": 400},
            "must be at least the raw event retention (500 days)",
        ),
        (
            {"store_query_timeout_seconds": 0},
            "UPTAKE_STORE_QUERY_TIMEOUT_SECONDS) must be at least 1",
        ),
    ],
)
def test_storage_settings_are_validated(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(values, environ={})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"store_ca_file": "/nonexistent/ca.pem"},
            "UPTAKE_STORE_CA_FILE is set but the store DSN is not https://",
        ),
        (
            {"store_dsn": "https://h:8443/db", "store_ca_file": "/nonexistent/ca.pem"},
            "the store CA file /nonexistent/ca.pem (UPTAKE_STORE_CA_FILE) does not exist",
        ),
        ({"cluster": "main"}, "UPTAKE_CLUSTER=main needs a ClickHouse server DSN"),
        (
            {"store_dsn": "http://h/db", "store_password_file": "/nonexistent/pw"},
            "cannot read the store password file /nonexistent/pw (UPTAKE_STORE_PASSWORD_FILE)",
        ),
    ],
)
def test_store_settings_are_checked_before_connecting(
    values: dict[str, object], message: str, tmp_path: Path
) -> None:
    settings = load_settings({"data_dir": str(tmp_path), **values}, environ={})
    with pytest.raises(ConfigError) as info:
        open_store(settings)
    assert message in str(info.value)
