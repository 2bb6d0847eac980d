"""Whether tracing is on: UPTAKE_TRACING, else the standard OTEL_* variables; and what it builds."""

from __future__ import annotations

import json

import pytest

from uptake_server import __version__
from uptake_server.config import load_settings
from uptake_server.errors import ConfigError
from uptake_server.telemetry import open_telemetry, span
from uptake_server.telemetry.tracing import service_resource

ENDPOINT = "http://collector.example:4317"


@pytest.mark.parametrize(
    ("environ", "tracing"),
    [
        ({}, "off"),
        ({"OTEL_SERVICE_NAME": "uptake", "OTEL_TRACES_SAMPLER": "always_on"}, "off"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "Console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, "off"),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, "off"),
        ({"UPTAKE_TRACING": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, "off"),
        ({"UPTAKE_TRACING": "console"}, "console"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp"),
    ],
)
def test_tracing_is_off_unless_configured(environ: dict[str, str], tracing: str) -> None:
    assert load_settings(environ=environ).tracing == tracing


def test_the_flag_wins_over_the_variables() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}
    assert load_settings({"tracing": "off"}, environ=environ).tracing == "off"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"UPTAKE_TRACING": "jaeger"},
            "setting tracing (UPTAKE_TRACING) must be off, otlp or console; got 'jaeger'",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER='zipkin' is not supported: use otlp, console or none",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL='http/protobuf' is not supported",
        ),
        (
            {
                "UPTAKE_TRACING": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            },
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json' is not supported",
        ),
    ],
)
def test_unsupported_trace_settings_fail_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert message in str(info.value)


def test_off_builds_no_tracer() -> None:
    telemetry = open_telemetry(load_settings(environ={}))
    assert telemetry.tracer is None and telemetry.provider is None
    telemetry.shutdown()


def test_console_export_prints_the_spans_at_shutdown(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = open_telemetry(load_settings({"tracing": "console"}, environ={}))
    assert telemetry.tracer is not None
    with span(telemetry.tracer, "uptake.example", attributes={"uptake.request_id": "r-1"}):
        pass
    telemetry.shutdown()  # flushes the batch processor
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "uptake.example"
    assert printed["attributes"] == {"uptake.request_id": "r-1"}
    assert printed["resource"]["attributes"]["service.name"] == "uptake-server"


def test_service_name_defaults_to_uptake_and_the_variables_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    attributes = service_resource().attributes
    assert attributes["service.name"] == "uptake-server"
    assert attributes["service.version"] == __version__
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment=prod")
    assert service_resource().attributes["service.name"] == "from-attrs"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "uptake-ingest")
    attributes = service_resource().attributes
    assert attributes["service.name"] == "uptake-ingest"
    assert attributes["deployment"] == "prod"
