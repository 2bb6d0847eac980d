"""The public surface of the SDK is pinned: it grows only on purpose."""

from __future__ import annotations

import inspect

import uptake


def test_public_names_are_pinned() -> None:
    assert sorted(uptake.__all__) == [
        "Client",
        "ConfigurationError",
        "Failure",
        "InMemoryTransport",
        "MetricsCollector",
        "OUTCOMES",
        "Options",
        "RecordedEvent",
        "Stats",
        "Transport",
        "TransportError",
        "UptakeError",
        "__version__",
        "flush",
        "init",
        "track",
    ]
    for name in uptake.__all__:
        assert hasattr(uptake, name), name


def test_track_signature_is_pinned() -> None:
    parameters = inspect.signature(uptake.Client.track).parameters
    assert list(parameters) == [
        "self",
        "user_id",
        "action",
        "tool",
        "org_unit",
        "feature",
        "properties",
        "timestamp",
    ]
    assert parameters["tool"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["tool"].default is inspect.Parameter.empty
    assert inspect.signature(uptake.track).parameters.keys() == (parameters.keys() - {"self"})


def test_client_options_are_keyword_only() -> None:
    parameters = list(inspect.signature(uptake.Client).parameters.values())
    assert parameters[0].name == "target"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])


def test_sdk_depends_on_grpcio_and_protobuf_only() -> None:
    from importlib.metadata import requires

    names = {
        r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires("uptake-sdk") or []
    }
    assert names == {"grpcio", "protobuf"}


def test_the_client_name_carries_the_version() -> None:
    from uptake._version import CLIENT_NAME

    assert f"uptake-python/{uptake.__version__}" == CLIENT_NAME


def test_the_distribution_version_is_the_package_version() -> None:
    from importlib.metadata import version

    assert version("uptake-sdk") == uptake.__version__
