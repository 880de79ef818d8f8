"""The replica's servers refuse to share a port: with grpc's default SO_REUSEPORT, a health port given
the API's port under another address would bind silently and take a share of the API's connections."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health

from coordinator.replica import ReplicaState
from coordinator.rpc.server import SERVER_OPTIONS, build_health_server


async def test_a_second_server_on_a_taken_port_fails_to_start() -> None:
    api = grpc.aio.server(options=SERVER_OPTIONS)  # the API server's real options
    port = api.add_insecure_port("0.0.0.0:0")
    await api.start()
    try:
        state = cast(ReplicaState, SimpleNamespace(health=health.aio.HealthServicer()))
        with pytest.raises(RuntimeError):
            server, _ = await build_health_server(state, f"127.0.0.1:{port}")
            await server.stop(None)
    finally:
        await api.stop(None)
