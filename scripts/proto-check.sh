#!/usr/bin/env bash
# Regenerates the protobuf code into a temp dir and fails if it differs from the committed code.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m grpc_tools.protoc -Iproto --python_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc --mypy_out="$tmp" --mypy_grpc_out="$tmp" proto/clusterq_proto/v1/*.proto
if ! diff -r -x __pycache__ -x __init__.py "$tmp/clusterq_proto" clusterq_proto >/dev/null; then
  diff -r -x __pycache__ -x __init__.py "$tmp/clusterq_proto" clusterq_proto | head -20 >&2
  echo "proto-check: generated code in clusterq_proto/ is stale: run 'make proto' and commit" >&2
  exit 1
fi
echo "proto-check: generated code is up to date"
