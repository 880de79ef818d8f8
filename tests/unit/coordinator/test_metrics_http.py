"""The /metrics HTTP endpoint on a real socket: answers, refusals, the bounds that keep a slow or
hostile client from holding it, and the CLUSTERQ_METRICS_LISTEN setting (parsed, and a port that
cannot be bound stops the replica with status 2)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import coordinator.metrics_http as metrics_http
from clusterq_testing.ports import free_tcp_port
from coordinator.__main__ import StartupError, serve
from coordinator.config import CoordinatorSettings
from coordinator.metrics import CONTENT_TYPE, ReplicaFigures
from coordinator.metrics_http import MetricsServer

ROOT = Path(__file__).resolve().parents[3]
FOLLOWER = ReplicaFigures("9.9.9", None)


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    """A started server on a free port exporting a follower's figures."""
    s = MetricsServer("127.0.0.1", 0, lambda: FOLLOWER)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *fields = head.decode().split("\r\n")
    return status, {k.lower(): v for k, _, v in (f.partition(": ") for f in fields)}, body


async def test_get_metrics_answers_the_exposition_text(server: MetricsServer) -> None:
    status, headers, body = _split(await _exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body) and headers["connection"] == "close"
    assert b"\nclusterq_leader 0\n" in body and b'clusterq_build_info{version="9.9.9"} 1\n' in body


async def test_head_answers_the_headers_alone(server: MetricsServer) -> None:
    status, headers, body = _split(await _exchange(server.port, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK" and int(headers["content-length"]) > 0 and body == b""


@pytest.mark.parametrize(("request_line", "status"), [
    (b"GET / HTTP/1.1", "HTTP/1.1 404 Not Found"),
    (b"GET /metrics/x HTTP/1.1", "HTTP/1.1 404 Not Found"),
    (b"POST /other HTTP/1.1", "HTTP/1.1 404 Not Found"),
    (b"POST /metrics HTTP/1.1", "HTTP/1.1 405 Method Not Allowed"),
    (b"DELETE /metrics HTTP/1.1", "HTTP/1.1 405 Method Not Allowed"),
    (b"GET /metrics", "HTTP/1.1 400 Bad Request"),
    (b"\x16\x03\x01 TLS hello", "HTTP/1.1 400 Bad Request"),
])
async def test_other_paths_methods_and_garbage_are_refused(server: MetricsServer, request_line: bytes,
                                                           status: str) -> None:
    got, headers, _ = _split(await _exchange(server.port, request_line + b"\r\n\r\n"))
    assert got == status
    if status.endswith("405 Method Not Allowed"):
        assert headers["allow"] == "GET, HEAD"


async def test_a_request_head_over_the_bound_is_refused(server: MetricsServer) -> None:
    big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * metrics_http.MAX_HEAD + b"\r\n\r\n"
    status, _, _ = _split(await _exchange(server.port, big))
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"


async def test_a_client_that_trickles_its_head_is_dropped_and_others_are_served(
        monkeypatch: pytest.MonkeyPatch, server: MetricsServer) -> None:
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the blank line
        await writer.drain()
        status, _, _ = _split(await _exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n"))
        assert status == "HTTP/1.1 200 OK"  # served meanwhile
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed unanswered after the deadline
    finally:
        writer.close()


async def test_a_client_that_does_not_read_its_answer_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "WRITE_TIMEOUT", 0.3)
    huge = ReplicaFigures("x" * 32_000_000, None)  # far beyond what socket buffers hold
    s = MetricsServer("127.0.0.1", 0, lambda: huge)
    await s.start()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", s.port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    try:
        await asyncio.sleep(2.0)  # rendering, then WRITE_TIMEOUT without reading
        reader, writer = await asyncio.open_connection(sock=sock)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 5):
                received += len(chunk)
        writer.close()
        # The rest of the answer was dropped with the connection, not kept for it (forever).
        assert 0 < received < 32_000_000
    finally:
        sock.close()
        await s.close()


async def test_connections_beyond_the_cap_get_503_at_once(monkeypatch: pytest.MonkeyPatch,
                                                          server: MetricsServer) -> None:
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 2)
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
    try:
        await asyncio.sleep(0.1)  # both are being served (waiting for their heads)
        status, headers, body = _split(await _exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n"))
        assert (status, headers["retry-after"], body) == ("HTTP/1.1 503 Service Unavailable", "1", b"")
    finally:
        for _, w in idle:
            w.close()
    await asyncio.sleep(0.1)
    status, _, _ = _split(await _exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"


async def test_figures_that_fail_answer_500_and_the_server_goes_on() -> None:
    calls: list[int] = []

    def flaky() -> ReplicaFigures:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return FOLLOWER

    s = MetricsServer("127.0.0.1", 0, flaky)
    await s.start()
    try:
        first, _, _ = _split(await _exchange(s.port, b"GET /metrics HTTP/1.1\r\n\r\n"))
        second, _, _ = _split(await _exchange(s.port, b"GET /metrics HTTP/1.1\r\n\r\n"))
    finally:
        await s.close()
    assert (first, second) == ("HTTP/1.1 500 Internal Server Error", "HTTP/1.1 200 OK")


async def test_close_stops_listening(server: MetricsServer) -> None:
    port = server.port
    await server.close()
    with pytest.raises(OSError):
        await _exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")


# ---------------------------------------------------------------------------------- the setting
def test_the_setting_is_off_unless_set_and_read_from_the_environment() -> None:
    assert CoordinatorSettings.from_env({}).metrics_listen == ""
    assert CoordinatorSettings.from_env({"CLUSTERQ_METRICS_LISTEN": "0.0.0.0:9102"}).metrics_listen == "0.0.0.0:9102"
    assert CoordinatorSettings.from_env({"CLUSTERQ_METRICS_LISTEN": "[::]:9102"}).metrics_listen == "[::]:9102"


@pytest.mark.parametrize(("env", "message"), [
    ({"CLUSTERQ_METRICS_LISTEN": "9102"}, "CLUSTERQ_METRICS_LISTEN must be host:port"),
    ({"CLUSTERQ_METRICS_LISTEN": "0.0.0.0:http"}, "CLUSTERQ_METRICS_LISTEN must be host:port"),
    ({"CLUSTERQ_METRICS_LISTEN": "0.0.0.0:70000"}, "CLUSTERQ_METRICS_LISTEN must be host:port"),
    ({"CLUSTERQ_LISTEN": "0.0.0.0:50051", "CLUSTERQ_METRICS_LISTEN": "127.0.0.1:50051"},
     "CLUSTERQ_METRICS_LISTEN must use another port than CLUSTERQ_LISTEN"),
    ({"CLUSTERQ_HEALTH_LISTEN": "0.0.0.0:50052", "CLUSTERQ_METRICS_LISTEN": "0.0.0.0:50052"},
     "CLUSTERQ_METRICS_LISTEN must use another port than CLUSTERQ_HEALTH_LISTEN"),
])
def test_a_bad_setting_is_a_configuration_error_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CoordinatorSettings.from_env(env)


async def test_serve_refuses_a_taken_metrics_port_and_closes_the_grpc_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        port = free_tcp_port()
        settings = CoordinatorSettings(etcd_endpoints=(f"127.0.0.1:{free_tcp_port()}",), listen=f"127.0.0.1:{port}",
                                       metrics_listen=busy, replica_id="unit")
        with pytest.raises(StartupError, match=rf"cannot listen on {busy} \(CLUSTERQ_METRICS_LISTEN\)"):
            await asyncio.wait_for(serve(settings), 10)
    with pytest.raises(OSError):  # the gRPC port it had opened is closed again
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


def test_a_taken_metrics_port_exits_with_status_2_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {**os.environ, "CLUSTERQ_ETCD_ENDPOINTS": f"127.0.0.1:{free_tcp_port()}",
               "CLUSTERQ_LISTEN": f"127.0.0.1:{free_tcp_port()}", "CLUSTERQ_METRICS_LISTEN": busy}
        done = subprocess.run([sys.executable, "-m", "coordinator"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot listen on {busy} (CLUSTERQ_METRICS_LISTEN)" in done.stderr and "Traceback" not in done.stderr


async def test_scrapes_close_together_share_one_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests back to back, or at once, collect the leader's figures once per CACHE_SECONDS."""
    calls: list[int] = []

    def counted() -> ReplicaFigures:
        calls.append(1)
        return FOLLOWER

    monkeypatch.setattr(metrics_http, "CACHE_SECONDS", 0.5)
    s = MetricsServer("127.0.0.1", 0, counted)
    await s.start()
    try:
        answers = await asyncio.gather(*(_exchange(s.port, b"GET /metrics HTTP/1.1\r\n\r\n") for _ in range(6)))
        assert {_split(a)[0] for a in answers} == {"HTTP/1.1 200 OK"} and len(calls) == 1
        await asyncio.sleep(0.6)
        assert _split(await _exchange(s.port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 200 OK"
        assert len(calls) == 2
    finally:
        await s.close()


async def test_a_head_request_that_is_refused_has_no_body(server: MetricsServer) -> None:
    status, headers, body = _split(await _exchange(server.port, b"HEAD / HTTP/1.1\r\n\r\n"))
    assert status == "HTTP/1.1 404 Not Found" and int(headers["content-length"]) > 0 and body == b""
