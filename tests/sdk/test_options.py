"""Options come from arguments, else UPTAKE_* variables, else documented defaults."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

import uptake
from uptake._options import Options, resolve


def test_defaults() -> None:
    options = resolve({}, environ={})
    assert options == Options()
    assert (options.target, options.batch_size, options.max_queue_size) == (
        "127.0.0.1:50051",
        500,
        10_000,
    )
    assert (options.flush_interval, options.retry_initial, options.retry_max) == (1.0, 0.5, 30.0)
    assert (options.retry_max_elapsed, options.atexit_timeout) == (600.0, 2.0)
    assert options.gzip and options.strict and not options.secure
    assert (options.mode, options.on_full) == ("background", "drop")


def test_environment_variables_fill_unset_arguments() -> None:
    environ = {
        "UPTAKE_TARGET": "ingest.example.org:443",
        "UPTAKE_API_KEY": "k",
        "UPTAKE_BATCH_SIZE": "1_000",
        "UPTAKE_FLUSH_INTERVAL_SECONDS": "0.25",
        "UPTAKE_GZIP": "false",
        "UPTAKE_TLS": "yes",
        "UPTAKE_MODE": "sync",
        "UPTAKE_ON_FULL": "block",
    }
    options = resolve({"api_key": "from-argument"}, environ=environ)
    assert options.target == "ingest.example.org:443"
    assert options.api_key == "from-argument"
    assert (options.batch_size, options.flush_interval) == (1000, 0.25)
    assert (options.gzip, options.tls, options.secure) == (False, True, True)
    assert (options.mode, options.on_full) == ("sync", "block")


def test_every_option_has_an_uptake_variable() -> None:
    names = [spec.metadata["env"] for spec in fields(Options)]
    assert all(name.startswith("UPTAKE_") for name in names)
    assert len(set(names)) == len(names)
    # The server's own pseudonym key variable must never configure the SDK.
    assert "UPTAKE_PSEUDONYM_KEY" not in names


@pytest.mark.parametrize(
    ("arguments", "environ", "message"),
    [
        ({}, {"UPTAKE_BATCH_SIZE": "many"}, r"UPTAKE_BATCH_SIZE='many' is invalid: .*integer"),
        ({}, {"UPTAKE_GZIP": "maybe"}, r"UPTAKE_GZIP='maybe' is invalid: gzip must be true or"),
        ({"batch_size": 0}, {}, r"batch_size=0 is invalid: batch_size must be greater than 0"),
        ({"batch_size": 20_000}, {}, r"at most 10,000"),
        ({"max_batch_bytes": 9 * 2**20}, {}, r"max_batch_bytes must be at most 8,388,608"),
        ({"mode": "async"}, {}, r"mode must be 'background' or 'sync'"),
        ({"on_full": "wait"}, {}, r"on_full must be 'drop' or 'block'"),
        ({"flush_interval": "1"}, {}, r"flush_interval must be a number"),
        ({"retry_max_elapsed": -1}, {}, r"retry_max_elapsed must not be negative"),
        ({"retry_initial": 5.0, "retry_max": 1.0}, {}, r"retry_max \(1.0\) must not be below"),
        ({"pseudonym_key": "short"}, {}, r"must be at least 16 bytes"),
        ({"cert_file": "/nonexistent"}, {}, r"cert_file and key_file .* go together"),
        ({"ca_file": "/nonexistent/ca.pem"}, {}, r"ca_file='/nonexistent/ca.pem' is not"),
    ],
)
def test_invalid_values_name_the_setting(
    arguments: dict[str, object], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        resolve(arguments, environ=environ)


def test_configuration_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        uptake.Client(batch_size=-1, transport=uptake.InMemoryTransport())


def test_certificate_files_imply_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert resolve({"ca_file": str(ca)}, environ={}).secure


def test_an_unusable_spool_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(uptake.ConfigurationError, match=r"spool_dir='.*file/spool' cannot be used"):
        uptake.Client(spool_dir=str(blocker / "spool"), transport=uptake.InMemoryTransport())
