"""Render the Helm chart with the real helm binary, for the deploy tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "uptake"
# The oldest and the newest Kubernetes minor release maintained upstream when
# this was written; kubernetes-validate ships schemas for both.
KUBE_VERSIONS = ("1.35.0", "1.37.0")
CRD_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
# helm template arguments that make the Prometheus Operator CRDs available.
WITH_CRDS = tuple(arg for api in CRD_APIS for arg in ("--api-versions", api))
SCENARIOS = ("defaults", "everything", "external-clickhouse", "cluster")
RELEASE = "rel"
NAMESPACE = "adoption"


@dataclass(frozen=True)
class Rendered:
    """The objects one scenario renders, with lookups by kind and name."""

    objects: list[dict[str, Any]]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        """Return the objects of one kind."""
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        """Return the only object of this kind and name."""
        (found,) = [o for o in self.kinds(kind) if o["metadata"]["name"] == name]
        return found

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (object name, pod spec) for every workload and bare pod."""
        for o in self.objects:
            if o["kind"] in ("Deployment", "Job"):
                yield o["metadata"]["name"], o["spec"]["template"]["spec"]
            elif o["kind"] == "Pod":
                yield o["metadata"]["name"], o["spec"]


def run_helm(helm: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run helm and return what it did."""
    return subprocess.run([helm, *map(str, args)], capture_output=True, text=True, timeout=60)


def template(helm: str, *args: str | Path, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    """Run helm template for the test release."""
    return run_helm(
        helm, "template", RELEASE, chart, "--namespace", NAMESPACE,
        "--kube-version", KUBE_VERSIONS[-1], *args,
    )  # fmt: skip


def render(helm: str, *args: str | Path, chart: Path = CHART) -> Rendered:
    """Render the chart and parse every object; fail with helm's message if it cannot."""
    result = template(helm, *args, chart=chart)
    assert result.returncode == 0, result.stderr
    return Rendered([o for o in yaml.safe_load_all(result.stdout) if o])


def values_file(scenario: str) -> Path:
    """Return the ci/ values file of a scenario."""
    return CHART / "ci" / f"{scenario}-values.yaml"


def scenario_values(scenario: str) -> dict[str, Any]:
    """Return the values a scenario sets."""
    values: dict[str, Any] = yaml.safe_load(values_file(scenario).read_text())
    return values
