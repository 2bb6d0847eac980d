from __future__ import annotations

import pytest

from uptake_server.config import Settings, load_settings, settings_table
from uptake_server.errors import ConfigError


def test_defaults_are_documented_values() -> None:
    settings = load_settings(environ={})
    assert settings.grpc_listen == "127.0.0.1:50051"
    assert settings.metrics_listen == "127.0.0.1:9464"
    assert settings.min_group_size == 5
    assert settings.commit_writers == 1
    assert settings.effective_store_dsn == f"chdb://{settings.data_path / 'store'}"


def test_environment_then_override_precedence() -> None:
    env = {"UPTAKE_GRPC_LISTEN": "0.0.0.0:6000", "UPTAKE_DEV": "yes", "UPTAKE_GRPC_WORKERS": "8"}
    assert load_settings(environ=env).grpc_listen == "0.0.0.0:6000"
    assert load_settings(environ=env).dev is True
    assert load_settings(environ=env).grpc_workers == 8
    overridden = load_settings({"grpc_listen": "127.0.0.1:7000"}, environ=env)
    assert overridden.grpc_listen == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"UPTAKE_GRPC_WORKERS": "many"}, "UPTAKE_GRPC_WORKERS='many' is not a valid int"),
        ({"UPTAKE_DEV": "perhaps"}, "UPTAKE_DEV='perhaps' is not a valid bool"),
        (
            {"UPTAKE_MIN_GROUP_SIZE": "2"},
            "min_group_size (UPTAKE_MIN_GROUP_SIZE) must be at least 3",
        ),
        ({"UPTAKE_GRPC_LISTEN": "localhost"}, "grpc_listen (UPTAKE_GRPC_LISTEN) must be host:port"),
        ({"UPTAKE_METRICS_LISTEN": "x:70000"}, "UPTAKE_METRICS_LISTEN) must be host:port"),
        ({"UPTAKE_STORE_DSN": "mysql://db"}, "UPTAKE_STORE_DSN) must start with chdb://"),
        ({"UPTAKE_LOG_FORMAT": "xml"}, "must be text or json"),
        ({"UPTAKE_MAX_PENDING_EVENTS": "0"}, "UPTAKE_MAX_PENDING_EVENTS) must be at least 1"),
        ({"UPTAKE_COMMIT_WRITERS": "0"}, "UPTAKE_COMMIT_WRITERS) must be 1 to 8; got 0"),
        ({"UPTAKE_COMMIT_WRITERS": "9"}, "UPTAKE_COMMIT_WRITERS) must be 1 to 8; got 9"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert fragment in str(info.value)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown settings: nope"):
        load_settings({"nope": 1}, environ={})


def test_settings_are_frozen_and_table_lists_every_setting() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.dev = True  # type: ignore[misc]
    names = {row[0] for row in settings_table()}
    assert {"grpc_listen", "store_dsn", "pseudonym_key", "min_group_size"} <= names
    assert all(row[1].startswith("UPTAKE_") for row in settings_table())
