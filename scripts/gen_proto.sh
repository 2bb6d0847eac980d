#!/usr/bin/env bash
# Regenerate the committed protobuf and gRPC stubs of the SDK from proto/.
# Generates into a temporary folder first, so a failure leaves the stubs as they were.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
# protoc finds the mypy-protobuf plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) on PATH.
PATH="$(cd "$(dirname "$python")" && pwd):$PATH"
export PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m grpc_tools.protoc -I proto \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  --mypy_out="$tmp" --mypy_grpc_out="$tmp" \
  proto/uptake/v1/*.proto
out=sdk/src/uptake/v1
rm -f "$out"/*_pb2*.py "$out"/*_pb2*.pyi
cp "$tmp"/uptake/v1/*_pb2* "$out"/
echo "generated: $(ls "$out"/*_pb2* | tr '\n' ' ')"
