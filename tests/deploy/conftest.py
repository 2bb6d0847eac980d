"""Fixtures of the deploy tests: the pinned helm binary and the rendered scenarios."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import IN_CI
from tests.deploy.chart import ROOT, SCENARIOS, WITH_CRDS, Rendered, render, values_file


@pytest.fixture(scope="session")
def helm() -> str:
    """Return the path of the pinned helm binary that scripts/get_helm.sh provides."""
    result = subprocess.run(
        ["bash", "scripts/get_helm.sh"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    if result.returncode != 0:
        message = f"scripts/get_helm.sh could not provide helm:\n{result.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return str(ROOT / result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, Rendered]:
    """Render every scenario once, with the Prometheus Operator CRDs available."""
    return {s: render(helm, "-f", values_file(s), *WITH_CRDS) for s in SCENARIOS}
