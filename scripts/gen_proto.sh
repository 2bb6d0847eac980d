#!/usr/bin/env bash
# Regenerate the committed protobuf and gRPC stubs of the SDK from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=sdk/src
rm -f "$out"/uptake/v1/*_pb2*.py "$out"/uptake/v1/*_pb2*.pyi
"$python" -m grpc_tools.protoc -I proto \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  proto/uptake/v1/*.proto
echo "generated: $(ls "$out"/uptake/v1/*_pb2* | tr '\n' ' ')"
