"""The container image and the laptop stack, checked statically (no Docker engine runs here).

The Dockerfile goes through hadolint and the image rules below; docker-compose.yml
through the compose-spec parser, then every file, port, service and address it
names is checked against the others, and the Prometheus and Alertmanager
configurations it mounts go through promtool and amtool.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose

from tests.conftest import IN_CI, require_tool
from tests.deploy.chart import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ROLES = {"uptake-migrate": "migrate", "uptake-ingest": "serve", "uptake-kpi": "kpi"}
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|dnf|yum|gcc|g\+\+|make|build-essential|pip install)\b"
)


def instructions(stage_text: str) -> list[tuple[str, str]]:
    """Split Dockerfile text into (INSTRUCTION, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", stage_text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), " ".join(rest.split())))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """Return the Dockerfile's build stages, each a list of instructions from its FROM."""
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        message = "hadolint is not installed; install it with: pip install -e '.[dev]'"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(hadolint), "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, json.dumps(json.loads(result.stdout or "[]"), indent=1)
    assert json.loads(result.stdout or "[]") == []


def test_image_is_multi_stage_on_a_pinned_slim_python() -> None:
    args = dict(
        a.split("=", 1) for w, a in instructions(DOCKERFILE.read_text()) if w == "ARG" and "=" in a
    )
    builder, final = stages()
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", args["PYTHON_IMAGE"])
    wheel = [a for w, a in builder if w == "RUN" and "pip wheel" in a]
    assert wheel, "the builder builds no wheels"
    assert re.search(r"pip wheel .* \./sdk \.(\s|$)", wheel[0]), wheel[0]


def test_final_stage_runs_uptake_server_as_non_root_without_build_tools() -> None:
    final = stages()[-1]
    runs = " ".join(a for w, a in final if w == "RUN")
    assert not BUILD_TOOLS.search(runs.replace("pip uninstall", "")), runs
    assert [a for w, a in final if w == "COPY"] == ["--from=builder /opt/uptake /opt/uptake"]
    (user,) = [a for w, a in final if w == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), user
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert ("ENTRYPOINT", '["uptake-server"]') in final
    assert ("CMD", '["serve"]') in final
    (expose,) = [a for w, a in final if w == "EXPOSE"]
    assert set(expose.split()) == {"50051", "9464"}


def dockerignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes + list(parts)
    )


def test_build_context_has_what_the_builder_copies_and_nothing_else() -> None:
    builder = stages()[0]
    sources = [s for w, a in builder if w == "COPY" for s in a.split()[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    for heavy in (".git", ".venv", ".tools", "var", "tests", "sdk/src/__pycache__"):
        assert dockerignored(heavy), f"{heavy} would be sent to the Docker daemon"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """Return docker-compose.yml with anchors resolved, checked by the compose-spec parser."""
    resolved: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    # The strict compose-spec parser rejects unknown keys and malformed values.
    PyCompose.from_json(json.dumps(resolved))
    return resolved


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Map each bind-mounted container path of a service to its path in the repository."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Return the repository file behind a path inside a container."""
    for target, source in sorted(bind_mounts(service).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not bind-mounted from the repository")


def test_stack_has_every_part(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {
        "clickhouse", "uptake-migrate", "uptake-ingest", "uptake-kpi", "simulator",
        "prometheus", "alertmanager", "grafana",
    }  # fmt: skip
    for name, role in ROLES.items():
        assert services(compose)[name]["command"] == [role]
    assert services(compose)["simulator"]["command"][0] == "simulate"
    ingest_env = services(compose)["uptake-ingest"]["environment"]
    assert ingest_env["UPTAKE_KPI_ENABLED"] == "false"


def test_images_are_pinned_or_built_here(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            continue
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {service['image']} is not pinned"
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)*", tag), f"{name}: {tag} is not a version"


def test_every_referenced_file_exists(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
    for name, secret in compose["secrets"].items():
        assert (ROOT / secret["file"]).is_file(), f"secret {name}: {secret['file']} missing"
    for service in services(compose).values():
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    prometheus = services(compose)["prometheus"]
    assert host_path(prometheus, "/etc/prometheus/rules") == CHART / "files" / "rules"
    grafana = services(compose)["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()


def test_dependencies_are_consistent(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {target: {} for target in depends}
        for target, spec in depends.items():
            assert target in all_services, f"{name} depends on unknown {target}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert all_services[target]["restart"] == "no"


def listen_port(service: dict[str, Any], variable: str) -> int:
    return int(service["environment"][variable].rpartition(":")[2])


def test_ports_are_local_unique_and_match_what_listens(compose: dict[str, Any]) -> None:
    host_ports: list[int] = []
    for name, service in services(compose).items():
        for mapping in service.get("ports", []):
            address, host, container = mapping.split(":")
            assert address == "127.0.0.1", f"{name} publishes {mapping} beyond this machine"
            host_ports.append(int(host))
            if name.startswith("uptake-"):
                listening = {
                    listen_port(service, v) for v in ("UPTAKE_GRPC_LISTEN", "UPTAKE_METRICS_LISTEN")
                }
                assert int(container) in listening, f"{name}: nothing listens on {container}"
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_addresses_point_at_services_that_listen_there(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    ingest = all_services["uptake-ingest"]
    command = all_services["simulator"]["command"]
    host, _, port = command[command.index("--target") + 1].rpartition(":")
    assert (host, int(port)) == ("uptake-ingest", listen_port(ingest, "UPTAKE_GRPC_LISTEN"))
    clickhouse = all_services["clickhouse"]["environment"]
    for name in ROLES:
        dsn = urlsplit(all_services[name]["environment"]["UPTAKE_STORE_DSN"])
        assert (dsn.hostname, dsn.port) == ("clickhouse", 8123)
        assert dsn.username == clickhouse["CLICKHOUSE_USER"]
        assert dsn.path == f"/{clickhouse['CLICKHOUSE_DB']}"
        assert dsn.password is None
    prometheus = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    (uptake_job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "uptake"]
    targets = {t for sc in uptake_job["static_configs"] for t in sc["targets"]}
    assert targets == {
        f"{name}:{listen_port(all_services[name], 'UPTAKE_METRICS_LISTEN')}"
        for name in ("uptake-ingest", "uptake-kpi")
    }
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uptake_job["job_name"] == chart_values["serviceMonitor"]["jobName"]
    (alertmanagers,) = prometheus["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]
    datasources = yaml.safe_load(
        (ROOT / "deploy/compose/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    assert [d["url"] for d in datasources["datasources"]] == ["http://prometheus:9090"]


def test_grafana_provisions_the_chart_dashboards(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    (provider_file,) = (provisioning / "dashboards").glob("*.yaml")
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    assert host_path(grafana, provider["options"]["path"]) == CHART / "files" / "dashboards"


def test_prometheus_config_and_rules_pass_promtool(compose: dict[str, Any], tmp_path: Path) -> None:
    promtool = require_tool("promtool", install="make tools (Debian package prometheus)")
    prometheus = services(compose)["prometheus"]
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    # Point the rule globs at the repository files the container mounts.
    config["rule_files"] = [str(host_path(prometheus, g)) for g in config["rule_files"]]
    matched = [p for g in config["rule_files"] for p in Path("/").glob(g.lstrip("/"))]
    assert matched, f"no rule file matches {config['rule_files']}"
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(checked)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(matched)} rule files found" in result.stdout + result.stderr


def test_alertmanager_config_passes_amtool(compose: dict[str, Any]) -> None:
    amtool = require_tool("amtool", install="make tools (Debian package prometheus-alertmanager)")
    alertmanager = services(compose)["alertmanager"]
    config = host_path(alertmanager, "/etc/alertmanager/alertmanager.yml")
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
