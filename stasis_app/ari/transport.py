"""The HTTP transport aioari's Swagger client calls (`request`, `ws_connect`, `close`): the secret in an
`Authorization` header (never in a URL), a pool of POOL_SIZE connections for commands and one of its
own for the heartbeat, and HTTP errors raised as `HttpStatus` (mapped to port.py errors by the adapter)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from stasis_app.ari.port import AriSettings

__all__ = ["KEEPALIVE", "POOL_SIZE", "WS_CLOSE_WAIT", "HttpClient", "HttpStatus"]

POOL_SIZE = 10  # Asterisk's HTTP listen backlog is 10: never open more connections at once
KEEPALIVE = 10.0  # below Asterisk's session_keep_alive (15 s) so we never reuse a closing socket
WS_CLOSE_WAIT = 1.0  # aiohttp would wait 10 s for a close handshake a stalled peer never sends


class HttpClient:
    """The transport object aioari's Swagger client calls (`request`, `ws_connect`, `close`)."""

    def __init__(self, settings: AriSettings) -> None:
        headers = {"Authorization": aiohttp.encode_basic_auth(settings.username, settings.password)}
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.request_timeout)
        pool = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=KEEPALIVE)
        self._session = aiohttp.ClientSession(headers=headers, timeout=timeout, connector=pool)
        ping_pool = aiohttp.TCPConnector(limit=1)
        self._ping_session = aiohttp.ClientSession(headers=headers, timeout=timeout, connector=ping_pool)
        self.on_ws_open: Callable[[], None] = lambda: None

    async def request(self, method: str, url: str, params: dict[str, Any] | None = None, data: Any = None,
                      headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        """Send one request; raise `HttpStatus` for status >= 400 (the body is read, the socket reused)."""
        session = self._ping_session if url.endswith("/asterisk/ping") else self._session
        response = await session.request(method, url, params=params, data=data, headers=headers)
        if response.status >= 400:
            raise HttpStatus(response.status, response.reason or "", await response.text())
        return response

    async def ws_connect(self, url: str, params: dict[str, Any] | None = None) -> aiohttp.ClientWebSocketResponse:
        """Open the event websocket and report it open before aioari reads its first message."""
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=WS_CLOSE_WAIT)
        ws = await self._session.ws_connect(url, params=params, timeout=timeout)
        self.on_ws_open()
        return ws

    async def close(self) -> None:
        """Drop every connection without waiting for a (possibly stalled) peer."""
        await self._session.close()
        await self._ping_session.close()


class HttpStatus(Exception):
    """Asterisk answered with an HTTP error status; `message` is ARI's `{"message": ...}` text."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        # ARI errors are {"message": ...}; anything else (e.g. the HTML 503 during shutdown) -> reason
        message = str(parsed.get("message", reason)) if isinstance(parsed, dict) else reason
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
