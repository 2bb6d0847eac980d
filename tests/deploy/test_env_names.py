"""The chart, the compose file and the image configure the server with names it really reads.

A misspelt variable is silently ignored (the server falls back to its default), so
every UPTAKE_* name set anywhere is checked against the settings in config.py, every
OTEL_* name against the OpenTelemetry SDK's own list, and every command line given to
the image against the real argument parser.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

import yaml
from opentelemetry import environment_variables as api_variables
from opentelemetry.sdk import environment_variables as sdk_variables

from tests.deploy.chart import Rendered
from tests.deploy.test_container import COMPOSE_FILE, stages
from uptake_server.cli import _parser
from uptake_server.config import Settings

SETTINGS = {str(f.metadata["env"]) for f in dataclasses.fields(Settings)}
OTEL = {
    value
    for module in (api_variables, sdk_variables)
    for name, value in vars(module).items()
    if name.startswith("OTEL_") and isinstance(value, str)
}


def unknown(names: Iterable[str]) -> list[str]:
    """Return the UPTAKE_* and OTEL_* names that nothing reads."""
    return sorted(
        n
        for n in names
        if (n.startswith("UPTAKE_") and n not in SETTINGS)
        or (n.startswith("OTEL_") and n not in OTEL)
    )


def parses(args: list[str]) -> bool:
    try:
        _parser().parse_args(args)
    except SystemExit:
        return False
    return True


def uptake_services() -> dict[str, dict[str, Any]]:
    """Return the compose services that run the Uptake image (anchors resolved)."""
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return {n: s for n, s in services.items() if "build" in s}


def test_the_checks_know_the_names_they_check() -> None:
    assert {"UPTAKE_CLUSTER", "UPTAKE_STORE_DSN", "UPTAKE_TRACING"} <= SETTINGS
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER"} <= OTEL
    assert unknown(["UPTAKE_STORE_CLUSTER", "UPTAKE_TARGET", "OTEL_SERVICE"]) == [
        "OTEL_SERVICE",
        "UPTAKE_STORE_CLUSTER",
        "UPTAKE_TARGET",
    ]
    assert not parses(["simulate", "--no-such-flag"])


def test_the_chart_sets_only_variables_the_server_reads(rendered: dict[str, Rendered]) -> None:
    for scenario, r in rendered.items():
        for name, spec in r.pod_specs():
            for container in spec["containers"]:
                names = [e["name"] for e in container.get("env", [])]
                assert not unknown(names), (
                    f"{scenario} {name}: {unknown(names)} are read by nothing"
                )
                if "args" in container:
                    assert parses(container["args"]), f"{scenario} {name}: {container['args']}"


def test_the_compose_file_sets_only_variables_the_server_reads() -> None:
    services = uptake_services()
    assert {"uptake-migrate", "uptake-ingest", "uptake-kpi", "simulator"} <= set(services)
    for name, service in services.items():
        environment = service.get("environment", {})
        names = (
            list(environment)
            if isinstance(environment, dict)
            else [entry.split("=", 1)[0] for entry in environment]
        )
        assert not unknown(names), f"{name}: {unknown(names)} are read by nothing"
        assert parses(service["command"]), f"{name}: {service['command']}"


def test_the_image_sets_only_variables_the_server_reads() -> None:
    final = stages()[-1]
    names = [
        match.group(1)
        for instruction, arguments in final
        if instruction == "ENV"
        for match in re.finditer(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", arguments)
    ]
    assert "UPTAKE_DATA_DIR" in names
    assert not unknown(names), f"Dockerfile ENV {unknown(names)} are read by nothing"
    (default_command,) = [json.loads(a) for i, a in final if i == "CMD"]
    assert parses(default_command)
