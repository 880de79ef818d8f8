"""The /metrics endpoint (CLUSTERQ_METRICS_LISTEN): a deliberately small HTTP/1.1 server on asyncio
streams, a thin adapter between coordinator/metrics.py (collect, render) and Prometheus.

`GET /metrics` (and HEAD, which HTTP servers must take) answers 200 with the exposition text; any
other path is 404, another method on /metrics 405. One request per connection (`Connection: close`):
a scrape every few seconds gains nothing from keep-alive, and no request body is ever read, so none
can be mistaken for a next request. The request head must arrive within READ_TIMEOUT and fit in
MAX_HEAD bytes, the response must be taken within WRITE_TIMEOUT, and at most MAX_CONNECTIONS are
served at once (more get 503 at once): a slow or hostile client costs a socket for seconds,
never the event loop the leader's queues run on.

Not aiohttp.web (a dependency already; the stasis app's health endpoints use it): the coordinator
does not load it otherwise, and its server sets no deadline for a request head that trickles in
(only a keep-alive timer, an hour by default), which is the one bound that matters here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from coordinator.metrics import CONTENT_TYPE, ReplicaFigures, render

log = logging.getLogger(__name__)

__all__ = ["MAX_CONNECTIONS", "MAX_HEAD", "READ_TIMEOUT", "WRITE_TIMEOUT", "MetricsServer", "refusal"]

MAX_HEAD = 8192  # bytes of request line + headers
READ_TIMEOUT = 5.0  # seconds for the whole request head
WRITE_TIMEOUT = 10.0  # seconds for the client to take the response
MAX_CONNECTIONS = 16
BUSY_LINGER = 0.2  # seconds a connection over the cap is kept to read its request before closing
CACHE_SECONDS = 1.0  # scrapes within this of the last rendering get the same text
PATH = b"/metrics"

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"


def _response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *,
              head_only: bool = False, extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("ascii") + (b"" if head_only else body)


def refusal(head: bytes) -> bytes | None:
    """The error response to a request head (request line + headers, without the blank line), or
    None for GET or HEAD /metrics."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response(400, b"bad request line\n")
    method, target = parts[0], parts[1]
    head_only = method == b"HEAD"  # a HEAD answer never has a body, an error's neither
    if target.split(b"?", 1)[0] != PATH:
        return _response(404, b"not found: try /metrics\n", head_only=head_only)
    if method not in (b"GET", b"HEAD"):
        return _response(405, b"method not allowed\n", head_only=head_only, extra="Allow: GET, HEAD\r\n")
    return None


def _render_bytes(figures: ReplicaFigures) -> bytes:
    return render(figures).encode("utf-8")


class MetricsServer:
    """Serves GET /metrics at host:port. At each scrape `figures()` runs on the event loop (it reads
    live leader state), then rendering runs in a worker thread: figures are immutable values, and
    rendering a large cluster's text (ms per 1,000 queues) then shares the interpreter with the loop
    instead of holding it in one piece."""

    def __init__(self, host: str, port: int, figures: Callable[[], ReplicaFigures]) -> None:
        self._host, self._port = host, port
        self._figures = figures
        self._server: asyncio.Server | None = None
        self._open: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        # The last rendering and when it was made; one rendering at a time (later requests wait for it
        # and share it). So requests back to back hold the leader's loop for at most one collection
        # (~20 ms at 1,000 queues) per CACHE_SECONDS, whoever sends them.
        self._cached: tuple[float, bytes] | None = None
        self._rendering = asyncio.Lock()
        self.renderings = 0
        self.port = 0

    async def start(self) -> None:
        """Bind and serve (OSError if the address cannot be bound); `port` is the bound port after."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop the connections being served (scrapes are retried by Prometheus)."""
        if self._server is None:
            return
        self._server.close()
        # Closing a connection ends its handler (its read sees the end); none is left cancelled.
        handlers = list(self._open.values())
        for writer in list(self._open):
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_CONNECTIONS:
            # Answered at once. The request is read (briefly, and not parsed) only so that closing does
            # not reset the connection over unread bytes, which could destroy the answer in flight.
            writer.write(BUSY)
            with contextlib.suppress(TimeoutError, OSError, asyncio.LimitOverrunError, ValueError):
                async with asyncio.timeout(BUSY_LINGER):
                    await reader.readuntil(b"\r\n\r\n")
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # not even these few bytes were taken
            else:
                writer.close()
            return
        task = asyncio.current_task()
        assert task is not None  # a handler always runs in its own task
        self._open[writer] = task
        try:
            response = await self._read(reader)
            async with asyncio.timeout(WRITE_TIMEOUT):
                if response is not None:
                    writer.write(response)
                    await writer.drain()
                # drain() returns below the buffer's low-water mark, not when it is empty: the close
                # waits for the rest, under the same deadline (a client that stops reading near the
                # end would otherwise hold the connection, uncounted, for ever).
                writer.close()
                await writer.wait_closed()
        except (TimeoutError, OSError):
            # A client that went away or is too slow: nothing to answer, and nothing still buffered
            # for it is sent (a plain close would wait for that buffer to drain, possibly forever).
            writer.transport.abort()
        finally:
            # Counted until its socket is closed or aborted.
            self._open.pop(writer, None)

    async def _read(self, reader: asyncio.StreamReader) -> bytes | None:
        """The response to the request on `reader`, or None when there is no one to answer."""
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _response(431, b"request head too large\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        head = head[:-4]
        if (refused := refusal(head)) is not None:
            return refused
        try:
            body = await self._body()
        except Exception:
            log.exception("metrics could not be rendered")
            return _response(500, b"metrics could not be rendered\n")
        return _response(200, body, CONTENT_TYPE, head_only=head.startswith(b"HEAD "))

    async def _body(self) -> bytes:
        async with self._rendering:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
            body = await asyncio.to_thread(_render_bytes, self._figures())
            self.renderings += 1
            self._cached = (time.monotonic(), body)
            return body
