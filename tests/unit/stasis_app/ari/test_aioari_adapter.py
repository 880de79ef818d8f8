"""AioAriAdapter without Asterisk: behaviour while it cannot connect (the real-Asterisk paths are in
tests/integration/stasis_app/test_aioari_adapter.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest

from stasis_app.ari.aioari_adapter import AioAriAdapter
from stasis_app.ari.port import AriSettings, AriUnavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adapter(port: int, *, backoff_initial: float = 0.2, backoff_max: float = 5.0,
             request_timeout: float = 5.0) -> AioAriAdapter:
    settings = AriSettings(url=f"http://127.0.0.1:{port}", username="u", password="p", node_id="t",
                           backoff_initial=backoff_initial, backoff_max=backoff_max,
                           request_timeout=request_timeout)
    return AioAriAdapter(settings, rand=lambda: 1.0)


class CountingServer:
    """Accepts TCP connections; either drops them at once or holds them open without answering."""

    def __init__(self, *, hold: bool) -> None:
        self.hold = hold
        self.accepted = 0
        self._held: list[asyncio.StreamWriter] = []

    async def _on_connect(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.hold:
            self._held.append(writer)  # a stalled HTTP server: never a byte back
        else:
            writer.close()

    async def start(self) -> tuple[asyncio.Server, int]:
        server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return server, int(server.sockets[0].getsockname()[1])

    def release(self) -> None:
        for writer in self._held:
            writer.close()


@pytest.fixture
async def dropping() -> AsyncIterator[tuple[CountingServer, int]]:
    counter = CountingServer(hold=False)
    server, port = await counter.start()
    yield counter, port
    server.close()
    await server.wait_closed()


async def test_commands_fail_fast_and_close_is_prompt_while_asterisk_is_down() -> None:
    adapter = _adapter(_closed_port())
    runner = asyncio.create_task(adapter.run())
    await asyncio.sleep(0.3)
    with pytest.raises(AriUnavailable, match="not connected"):
        await adapter.answer("c1")
    started = time.monotonic()
    await adapter.close()
    await asyncio.wait_for(runner, 1)
    assert time.monotonic() - started < 0.5
    assert [e async for e in adapter.events()] == []  # never connected: no markers at all


async def test_reconnect_attempts_back_off_exponentially_up_to_the_cap(
    dropping: tuple[CountingServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    counter, port = dropping
    adapter = _adapter(port, backoff_initial=0.05, backoff_max=0.2)
    with caplog.at_level(logging.INFO, logger="stasis_app.ari.aioari_connection"):
        runner = asyncio.create_task(adapter.run())
        await asyncio.sleep(1.0)
        await adapter.close()
        await asyncio.wait_for(runner, 1)
    delays = [m.rsplit("retry in ", 1)[1] for m in caplog.messages if "connect failed" in m]
    # rand=1 -> 0.05, 0.1, 0.2, 0.2, ...: about 7 attempts in 1 s (a tight loop would make hundreds)
    assert delays[:4] == ["0.05 s", "0.10 s", "0.20 s", "0.20 s"]
    assert 5 <= len(delays) <= 9
    assert counter.accepted >= len(delays)  # each attempt really reached the server


async def test_close_interrupts_a_connect_to_a_stalled_asterisk() -> None:
    counter = CountingServer(hold=True)
    server, port = await counter.start()
    try:
        adapter = _adapter(port, request_timeout=30.0)
        runner = asyncio.create_task(adapter.run())
        await asyncio.sleep(0.3)
        assert counter.accepted == 1  # waiting for the Swagger listing that never comes
        started = time.monotonic()
        await adapter.close()
        await asyncio.wait_for(runner, 2)
        assert time.monotonic() - started < 1.0
        assert [e async for e in adapter.events()] == []
    finally:
        counter.release()
        server.close()
        await server.wait_closed()


async def test_run_after_close_returns_at_once() -> None:
    adapter = _adapter(_closed_port())
    await adapter.close()
    await asyncio.wait_for(adapter.run(), 0.5)


@pytest.mark.parametrize(("status", "message", "fine"), [
    (404, "Bridge not found", True),
    (409, "Bridge not in Stasis application", True),  # Asterisk 22, a bridge being destroyed
    (409, "Bridge is in use", False),
    (500, "Internal Server Error", False),
])
async def test_destroying_a_bridge_that_is_gone_or_going_is_fine(
        monkeypatch: pytest.MonkeyPatch, status: int, message: str, fine: bool) -> None:
    from stasis_app.ari.port import AriError

    adapter = _adapter(_closed_port())

    async def refuse(*_args: object, **_kw: object) -> None:
        raise AriError(status, message)

    monkeypatch.setattr(adapter, "_call", refuse)
    if fine:
        await adapter.destroy_bridge("br-1")
    else:
        with pytest.raises(AriError):
            await adapter.destroy_bridge("br-1")
