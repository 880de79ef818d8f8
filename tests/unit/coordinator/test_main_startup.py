"""The coordinator's startup: a broken queues file stops it before it serves; without etcd the
replica answers its liveness service but is not ready."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clusterq_testing.ports import free_tcp_port
from coordinator.__main__ import StartupError, serve
from coordinator.config import CoordinatorSettings
from coordinator.rpc.server import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[3]
BAD_QUEUES = "queues:\n  support: {strategy: fastest}\n"


def _settings(listen_port: int, queues_file: Path | None = None) -> CoordinatorSettings:
    # Nothing listens on the etcd port: the replica never reaches etcd.
    return CoordinatorSettings(etcd_endpoints=(f"127.0.0.1:{free_tcp_port()}",), lease_ttl=2.0, node_ttl=4.0,
                               listen=f"127.0.0.1:{listen_port}", queues_file=queues_file, replica_id="unit")


async def test_a_bad_queues_file_stops_serve_before_it_listens(tmp_path: Path) -> None:
    bad = tmp_path / "queues.yaml"
    bad.write_text(BAD_QUEUES)
    port = free_tcp_port()
    with pytest.raises(StartupError, match=r"queues\.yaml.*fastest"):
        await asyncio.wait_for(serve(_settings(port, bad)), 5)
    with pytest.raises(OSError):  # never bound
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


def test_main_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "queues.yaml"
    bad.write_text(BAD_QUEUES)
    env = {**os.environ, "CLUSTERQ_QUEUES_FILE": str(bad), "CLUSTERQ_LISTEN": f"127.0.0.1:{free_tcp_port()}",
           "CLUSTERQ_ETCD_ENDPOINTS": f"127.0.0.1:{free_tcp_port()}"}
    done = subprocess.run([sys.executable, "-m", "coordinator"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "CLUSTERQ_QUEUES_FILE" in done.stderr and "fastest" in done.stderr


async def _status(address: str, service: str) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    async with grpc.aio.insecure_channel(address) as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return r.status


async def test_without_etcd_the_replica_is_alive_but_not_ready() -> None:
    port = free_tcp_port()
    ready = asyncio.Event()
    task = asyncio.ensure_future(serve(_settings(port), ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        for _ in range(5):  # and stays so while etcd cannot be reached
            assert await _status(f"127.0.0.1:{port}", "") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await _status(f"127.0.0.1:{port}", LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("which", ["CLUSTERQ_LISTEN", "CLUSTERQ_HEALTH_LISTEN"])
def test_a_taken_port_exits_with_status_2_naming_the_setting(which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {**os.environ, "CLUSTERQ_ETCD_ENDPOINTS": f"127.0.0.1:{free_tcp_port()}",
               "CLUSTERQ_LISTEN": f"127.0.0.1:{free_tcp_port()}", "CLUSTERQ_HEALTH_LISTEN": f"127.0.0.1:{free_tcp_port()}"}
        env[which] = busy
        done = subprocess.run([sys.executable, "-m", "coordinator"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot listen on {busy} ({which})" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("content", "message"), [
    (None, r"CLUSTERQ_ETCD_CA_FILE .*ca\.pem cannot be read"),
    (b"not a certificate", "CA certificate is not a PEM certificate"),
])
async def test_unusable_etcd_tls_files_stop_serve_before_it_listens(tmp_path: Path, content: bytes | None,
                                                                   message: str) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    port = free_tcp_port()
    settings = dataclasses.replace(_settings(port), etcd_ca_file=ca)
    with pytest.raises(StartupError, match=message):
        await asyncio.wait_for(serve(settings), 5)
    with pytest.raises(OSError):  # never bound
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


def test_an_unreadable_etcd_password_file_exits_with_status_2(tmp_path: Path) -> None:
    env = {**os.environ, "CLUSTERQ_ETCD_USER": "root", "CLUSTERQ_ETCD_PASSWORD_FILE": str(tmp_path / "no-pw"),
           "CLUSTERQ_LISTEN": f"127.0.0.1:{free_tcp_port()}"}
    done = subprocess.run([sys.executable, "-m", "coordinator"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "no-pw" in done.stderr and "Traceback" not in done.stderr
