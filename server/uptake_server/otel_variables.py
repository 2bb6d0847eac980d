"""The OpenTelemetry SDK's standard environment variables, as Uptake's tracing reads them.

With no Uptake setting for tracing, the usual OTEL_* variables decide: the SDK's
kill switch, the exporter asked for, or an OTLP endpoint given.
"""

from __future__ import annotations

from collections.abc import Mapping

from uptake_server.errors import ConfigError


def tracing_from_otel(environ: Mapping[str, str], *, setting: str) -> str:
    """Return the trace exporter the standard OTEL_* variables ask for: off unless one does."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "off"
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return "off"
    if exporter in ("otlp", "console"):
        return exporter
    if exporter:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={exporter!r} is not supported: use otlp, console or none "
            f"(or set {setting})"
        )
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(environ.get(name, "").strip() for name in endpoints) else "off"


def check_otlp_protocol(environ: Mapping[str, str]) -> None:
    """Refuse an OTLP protocol other than gRPC, the one Uptake exports with."""
    # The traces-specific variable wins over the general one, as in the OTel SDK.
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol:
            if protocol != "grpc":
                raise ConfigError(
                    f"{name}={protocol!r} is not supported: Uptake exports traces with OTLP "
                    "over gRPC (grpc), usually to port 4317"
                )
            return
