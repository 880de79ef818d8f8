# clusterq: `make run` (local cluster on real Asterisk + etcd) and `make test` (everything CI runs).
# Both do all set-up on a fresh Debian 12 machine as root (scripts/provision.sh is idempotent).
SHELL := /bin/bash
PY := .venv/bin/python
PROTO_SRC := $(wildcard proto/clusterq_proto/v1/*.proto)

.PHONY: provision proto proto-check lint test test-unit run bench clean

provision:
	bash scripts/provision.sh all

# Generated code goes into the clusterq_proto package; never edit it by hand.
proto: provision
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc --mypy_out=. --mypy_grpc_out=. $(PROTO_SRC)

# Fails when the committed generated code does not match the .proto files.
proto-check: provision
	bash scripts/proto-check.sh

lint: provision
	.venv/bin/ruff check .
	.venv/bin/mypy

test: provision proto-check lint
	bash scripts/run-tests.sh

test-unit: provision
	.venv/bin/pytest tests/unit -q

run: provision
	$(PY) -m clusterq_testing.demo

# Benchmarks print figures and ratios (they are not tests): the coordinator alone over real gRPC with
# simulated nodes, then clusterq beside Asterisk's own app_queue on one real Asterisk.
bench: provision
	$(PY) -m clusterq_testing.bench --markdown docs/benchmarks-latest.md
	$(PY) -m clusterq_testing.bench_asterisk

clean:
	rm -rf .venv .cache .mypy_cache .ruff_cache .pytest_cache
