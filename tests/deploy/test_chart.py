"""The Helm chart, rendered by the real helm binary and validated object by object.

Every ci/*-values.yaml scenario is rendered once per session. Kubernetes objects
are checked with kubernetes-validate --strict against the schemas of the oldest
and newest maintained Kubernetes releases; ServiceMonitor and PrometheusRule
objects with the Prometheus Operator's generated pydantic models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

from tests.deploy.chart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Rendered,
    render,
    run_helm,
    scenario_values,
    values_file,
)

OPERATOR_MODELS = {"ServiceMonitor": ServiceMonitor, "PrometheusRule": PrometheusRule}


def test_every_scenario_has_a_values_file() -> None:
    assert sorted(p.name for p in (CHART / "ci").glob("*-values.yaml")) == sorted(
        f"{s}-values.yaml" for s in SCENARIOS
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(helm: str, scenario: str) -> None:
    result = run_helm(helm, "lint", "--strict", CHART, "-f", values_file(scenario))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_validate_against_kubernetes_schemas(
    rendered: dict[str, Rendered], scenario: str, kube_version: str
) -> None:
    checked = 0
    for obj in rendered[scenario].objects:
        if obj["kind"] in OPERATOR_MODELS:
            continue
        where = f"{scenario}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where} is invalid for Kubernetes {kube_version}: {error.message}")
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_objects_validate_against_the_operator_models(
    rendered: dict[str, Rendered], scenario: str
) -> None:
    for obj in rendered[scenario].objects:
        model = OPERATOR_MODELS.get(obj["kind"])
        if model is None:
            continue
        parsed = model.model_validate(obj)
        # The models ignore unknown fields; a lossless round trip proves there are none.
        assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj


def rule_files() -> list[Path]:
    folder = CHART / "files" / "rules"
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def dashboard_files() -> list[Path]:
    return sorted((CHART / "files" / "dashboards").glob("*.json"))


def test_scenarios_render_the_expected_objects(rendered: dict[str, Rendered]) -> None:
    def census(r: Rendered) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in r.objects:
            counts[o["kind"]] = counts.get(o["kind"], 0) + 1
        return counts

    base = {"Deployment": 2, "Job": 1, "Service": 3, "PodDisruptionBudget": 1, "Pod": 1}
    assert census(rendered["defaults"]) == base | {
        "ServiceAccount": 1, "Secret": 1, "ConfigMap": 1,
    }  # fmt: skip
    everything = census(rendered["everything"])
    assert everything == base | {
        "ServiceAccount": 1,
        "Secret": 2,  # the release's credentials and the migration hook's copy
        "ConfigMap": 2 + len(dashboard_files()),  # registry, test script, dashboards
        "HorizontalPodAutoscaler": 1,
        "NetworkPolicy": 3,
        "ServiceMonitor": 1,
        **({"PrometheusRule": len(rule_files())} if rule_files() else {}),
    }
    # Credentials only in existing Secrets: the chart creates none.
    assert census(rendered["external-clickhouse"]) == base | {"ConfigMap": 1, "NetworkPolicy": 3}


def test_operator_objects_need_their_crds(helm: str) -> None:
    without = render(helm, "-f", values_file("everything"))
    assert not without.kinds("ServiceMonitor")
    assert not without.kinds("PrometheusRule")
    assert without.kinds("NetworkPolicy")


def test_image_reference(rendered: dict[str, Rendered]) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    everything = scenario_values("everything")["image"]
    expected = {
        "defaults": f"uptake-server:{app_version}",
        "everything": f"{everything['repository']}@{everything['digest']}",
    }
    for scenario, image in expected.items():
        for name, spec in rendered[scenario].pod_specs():
            assert {c["image"] for c in spec["containers"]} == {image}, name


def test_every_pod_is_locked_down(rendered: dict[str, Rendered]) -> None:
    for scenario, r in rendered.items():
        for name, spec in r.pod_specs():
            where = f"{scenario}: {name}"
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True, where
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert spec["automountServiceAccountToken"] is False, where
            tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"] == {"drop": ["ALL"]}, where
                assert {"requests", "limits"} <= set(c["resources"]), where
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert mounts.get("/tmp") in tmp, f"{where}: /tmp is not an emptyDir"


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_ingest_pods(rendered: dict[str, Rendered]) -> None:
    for scenario, r in rendered.items():
        values = scenario_values(scenario)
        deployment = r.one("Deployment", f"{RELEASE}-uptake-ingest")
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["serve"]
        env = env_of(container)
        assert env["UPTAKE_GRPC_LISTEN"] == "0.0.0.0:50051"
        assert env["UPTAKE_METRICS_LISTEN"] == "0.0.0.0:9464"
        assert env["UPTAKE_LOG_FORMAT"] == "json"
        assert env["UPTAKE_STORE_DSN"] == values["store"]["dsn"]
        assert env["UPTAKE_PSEUDONYM_KEY_FILE"] == "/etc/uptake/secrets/pseudonym-key"
        assert env.get("UPTAKE_CLUSTER") == values["store"].get("cluster")
        probes = {p: container[p]["grpc"] for p in ("livenessProbe", "readinessProbe")}
        assert probes["readinessProbe"] == {"port": 50051, "service": "uptake.v1.IngestService"}
        assert probes["livenessProbe"]["port"] == 50051
        assert container["startupProbe"]["grpc"]["port"] == 50051
        drain = float(env["UPTAKE_SHUTDOWN_DELAY_SECONDS"]) + float(
            env["UPTAKE_SHUTDOWN_GRACE_SECONDS"]
        )
        assert spec["terminationGracePeriodSeconds"] > drain, scenario
        autoscaled = bool(r.kinds("HorizontalPodAutoscaler"))
        assert ("replicas" in deployment["spec"]) is not autoscaled, scenario
        for constraint in spec["topologySpreadConstraints"]:
            selector = constraint["labelSelector"]["matchLabels"]
            assert selector == deployment["spec"]["selector"]["matchLabels"]
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]


def test_kpi_exporter_is_a_single_replica(rendered: dict[str, Rendered]) -> None:
    for r in rendered.values():
        deployment = r.one("Deployment", f"{RELEASE}-uptake-kpi")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["kpi"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert not [h for h in r.kinds("HorizontalPodAutoscaler") if "kpi" in str(h["spec"])]


def test_migration_job_is_a_hook_that_needs_nothing_from_the_release(
    rendered: dict[str, Rendered],
) -> None:
    for scenario, r in rendered.items():
        job = r.one("Job", f"{RELEASE}-uptake-migration")
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        spec = job["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["migrate"]
        # A pre-install hook runs before the release's objects exist.
        release_objects = {
            (o["kind"], o["metadata"]["name"])
            for o in r.objects
            if "helm.sh/hook" not in o["metadata"].get("annotations", {})
        }
        assert ("ServiceAccount", spec.get("serviceAccountName")) not in release_objects
        for volume in spec["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                name = source["secret"]["name"]
                assert ("Secret", name) not in release_objects, f"{scenario}: {name}"
                if name.startswith(RELEASE):
                    hook_secret = r.one("Secret", name)
                    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_secret_files_are_mounted_where_the_env_points(rendered: dict[str, Rendered]) -> None:
    for scenario, r in rendered.items():
        secrets = {o["metadata"]["name"]: o for o in r.kinds("Secret")}
        for name, spec in r.pod_specs():
            items: dict[str, tuple[str, str]] = {}
            for volume in spec["volumes"]:
                for source in volume.get("projected", {}).get("sources", []):
                    for item in source["secret"]["items"]:
                        items[f"/etc/uptake/secrets/{item['path']}"] = (
                            source["secret"]["name"],
                            item["key"],
                        )
            for container in spec["containers"]:
                for var, value in env_of(container).items():
                    if var.endswith("_FILE") and value.startswith("/etc/uptake/secrets/"):
                        secret, key = items[value]
                        if secret in secrets:  # created by the chart: the key must be there
                            assert key in secrets[secret]["data"], f"{scenario}: {name} {var}"
    external = scenario_values("external-clickhouse")
    ingest = rendered["external-clickhouse"].one("Deployment", f"{RELEASE}-uptake-ingest")
    sources = ingest["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"]
    assert {(s["secret"]["name"], s["secret"]["items"][0]["key"]) for s in sources} == {
        (external[k]["existingSecret"]["name"], external[k]["existingSecret"]["key"])
        for k in ("store", "pseudonymKey", "apiKeys")
    }


def test_services_select_ports_their_pods_have(rendered: dict[str, Rendered]) -> None:
    for scenario, r in rendered.items():
        pods = [
            (o["spec"]["template"]["metadata"]["labels"], o["spec"]["template"]["spec"])
            for o in r.kinds("Deployment")
        ]
        for service in r.kinds("Service"):
            selector = service["spec"]["selector"]
            matched = [spec for labels, spec in pods if selector.items() <= labels.items()]
            assert matched, f"{scenario}: {service['metadata']['name']} selects no pod"
            for port in service["spec"]["ports"]:
                for spec in matched:
                    names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                    assert port["targetPort"] in names
        headless = r.one("Service", f"{RELEASE}-uptake-headless")
        assert headless["spec"]["clusterIP"] == "None"


def test_every_object_carries_the_standard_labels(rendered: dict[str, Rendered]) -> None:
    required = {
        "app.kubernetes.io/name": "uptake",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "uptake",
    }
    for scenario, r in rendered.items():
        for o in r.objects:
            labels = o["metadata"]["labels"]
            assert required.items() <= labels.items(), f"{scenario}: {o['kind']}"
    everything = rendered["everything"]
    for o in everything.objects:
        assert o["metadata"]["labels"]["team"] == "adoption"
    for cm in everything.kinds("ConfigMap"):
        if cm["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards":
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert cm["metadata"]["namespace"] == "monitoring"


def test_helm_test_pod_checks_both_services(rendered: dict[str, Rendered]) -> None:
    pod = rendered["defaults"].one("Pod", f"{RELEASE}-uptake-test-health")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"{RELEASE}-uptake.{NAMESPACE}.svc:50051" in script
    assert f"dns:///{RELEASE}-uptake-headless.{NAMESPACE}.svc:50051" in script
    checks = rendered["defaults"].one("ConfigMap", f"{RELEASE}-uptake-test-health")
    shipped = (CHART / "files" / "health_check.py").read_text()
    assert checks["data"]["health_check.py"] == shipped


def test_network_policies_admit_what_the_release_needs(rendered: dict[str, Rendered]) -> None:
    values = scenario_values("everything")["networkPolicy"]
    r = rendered["everything"]
    ingress = r.one("NetworkPolicy", f"{RELEASE}-uptake-ingest")["spec"]["ingress"]
    grpc_rule = next(rule for rule in ingress if rule["ports"][0]["port"] == "grpc")
    test_labels = r.one("Pod", f"{RELEASE}-uptake-test-health")["metadata"]["labels"]
    selectors = [peer["podSelector"]["matchLabels"] for peer in grpc_rule["from"][:1]]
    assert selectors and selectors[0].items() <= test_labels.items()
    assert grpc_rule["from"][1:] == values["grpcFrom"]
    egress = r.one("NetworkPolicy", f"{RELEASE}-uptake-egress")["spec"]["egress"]
    allowed = {(p["port"], p["protocol"]) for rule in egress for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP")} <= allowed
    assert {(port, "TCP") for port in values["egress"]["storePorts"]} <= allowed
    store_rule = next(rule for rule in egress if rule.get("to") == values["egress"]["storeTo"])
    assert [p["port"] for p in store_rule["ports"]] == values["egress"]["storePorts"]


def test_tracing_is_off_by_default_and_reaches_only_the_ingestion_pods_when_on(
    rendered: dict[str, Rendered],
) -> None:
    for scenario, r in rendered.items():
        extra = {e["name"] for e in scenario_values(scenario).get("extraEnv", [])}
        for name, spec in r.pod_specs():
            for container in spec["containers"]:
                names = [e["name"] for e in container.get("env", [])]
                traced = scenario == "everything" and name == f"{RELEASE}-uptake-ingest"
                assert ("UPTAKE_TRACING" in names) is traced, (scenario, name)
                if not traced:
                    assert {n for n in names if n.startswith("OTEL_")} <= extra, (scenario, name)
    tracing = scenario_values("everything")["tracing"]
    deployment = rendered["everything"].one("Deployment", f"{RELEASE}-uptake-ingest")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["UPTAKE_TRACING"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == tracing["endpoint"]
    assert env["OTEL_SERVICE_NAME"] == tracing["serviceName"]
    assert env["OTEL_TRACES_SAMPLER"] == tracing["sampler"]
    assert float(env["OTEL_TRACES_SAMPLER_ARG"]) == tracing["samplerArg"]
    attributes = dict(a.split("=", 1) for a in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attributes == {
        "k8s.namespace.name": NAMESPACE,
        "k8s.pod.name": "$(K8S_POD_NAME)",
        **tracing["resourceAttributes"],
    }
    # Kubernetes expands $(K8S_POD_NAME) only from a variable defined before it.
    names = [e["name"] for e in container["env"]]
    assert names.index("K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    (pod_name,) = [e for e in container["env"] if e["name"] == "K8S_POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
