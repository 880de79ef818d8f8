"""`AioAriConnection`, the connection half of `AioAriAdapter` (aioari_adapter.py): it loads aioari's
Swagger client, opens the event websocket, turns its JSON into typed events (events.py), watches it with
a heartbeat and reconnects with jittered backoff, framing every connection with the AriConnected /
AriDisconnected / ApplicationReplaced markers (port.py). Why each piece exists (aioari lacks it) and what
it measured is in aioari_adapter.py's docstring, points 1, 2 and 6.

A module of its own because it is the adapter's one stateful, concurrent part (reader task, heartbeat
task, generations, closing), while the commands in aioari_adapter.py are plain requests over whichever
aioari client it holds at the moment (`_client`, None while disconnected). `_brief` keeps its leading
underscore: it serves the adapter alone (both halves describe errors with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import aioari

from stasis_app.ari.events import ApplicationReplaced, AriConnected, AriDisconnected, AriEvent, decode
from stasis_app.ari.port import AriSettings, AriUnavailable, EventStream
from stasis_app.ari.transport import WS_CLOSE_WAIT, HttpClient

__all__ = ["AioAriConnection", "backoff_delay"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def backoff_delay(attempt: int, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> float:
    """Delay before reconnect `attempt` (0-based): d = min(maximum, initial * 2**attempt), jittered
    uniformly into [d/2, d] so that many nodes restarting together do not redial in lockstep."""
    ceiling = min(maximum, initial * 2.0 ** min(attempt, 64))
    return ceiling * (0.5 + 0.5 * rand())


class AioAriConnection:
    """The event websocket of `AioAriAdapter` and its upkeep: connect, heartbeat, reconnect with backoff,
    markers, typed events. `AioAriAdapter` adds the commands; it is the class to use."""

    def __init__(self, settings: AriSettings, *, rand: Callable[[], float] = random.random) -> None:
        self.node_id = settings.node_id
        self._s = settings
        self._rand = rand
        self._events = EventStream()
        self._client: Any = None  # aioari.Client while connected, else None
        self._generation = 0  # bumps on every teardown; a stale reader's events are dropped
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._stood_down = False
        self._ever_connected = False
        self._replaced = asyncio.Event()  # set by the reader on ApplicationReplaced; new per connection

    # ---- lifecycle -------------------------------------------------------------------------------

    def events(self) -> AsyncIterator[AriEvent]:
        """The typed event stream (one consumer); ends after `close()`."""
        return self._events

    async def run(self) -> None:
        """Connect, serve, and reconnect with jittered backoff until `close()` or ApplicationReplaced."""
        if self._running or self._closing.is_set() or self._stood_down:
            return
        self._running = True
        attempt = 0
        try:
            while not self._closing.is_set():
                try:
                    connection = await self._unless_closing(self._connect())
                except Exception as exc:  # any failure to connect (HTTP, Swagger, websocket) -> retry
                    delay = backoff_delay(attempt, self._s.backoff_initial, self._s.backoff_max, self._rand)
                    level = logging.WARNING if attempt == 0 else logging.INFO  # one warning per outage
                    log.log(level, "ARI %s: connect failed (%s); retry in %.2f s", self.node_id, _brief(exc), delay)
                    attempt += 1
                    await self._unless_closing(asyncio.sleep(delay))
                    continue
                if connection is None:  # closing
                    break
                attempt = 0
                log.info("ARI %s: connected (app %s)", self.node_id, self._s.app)
                reason = await self._serve(*connection)
                if reason is None:
                    log.warning(
                        "ARI %s: app %s replaced by another client; standing down", self.node_id, self._s.app
                    )
                    self._stood_down = True
                    self._events.put(ApplicationReplaced())
                    return
                log.warning("ARI %s: disconnected: %s", self.node_id, reason)
                self._events.put(AriDisconnected(reason))
                first_delay = backoff_delay(0, self._s.backoff_initial, self._s.backoff_max, self._rand)
                await self._unless_closing(asyncio.sleep(first_delay))
        finally:
            self._running = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop `run()` (tearing the connection down) and end `events()`."""
        self._closing.set()
        if self._running:
            await self._stopped.wait()
        self._events.end()

    async def _unless_closing(self, work: Coroutine[Any, Any, _T]) -> _T | None:
        """Await `work` unless `close()` comes first; then cancel it, let it clean up, return None."""
        task = asyncio.ensure_future(work)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # its own cleanup (e.g. teardown) runs before we go on
        return None if task.cancelled() else task.result()

    async def _connect(self) -> tuple[HttpClient, asyncio.Task[None]]:
        """Load Swagger and open the websocket; return (transport, reader task) once it is open."""
        opened = asyncio.Event()
        http = HttpClient(self._s)
        reader: asyncio.Task[None] | None = None
        self._replaced = asyncio.Event()
        try:
            async with asyncio.timeout(self._s.request_timeout):
                client = aioari.Client(self._s.http_root, http)
                await client.init()
                generation = self._generation
                client.on_event("*", lambda raw: self._on_raw(generation, raw))
                http.on_ws_open = lambda: self._on_ws_open(client, opened)
                reader = asyncio.create_task(client.run(apps=self._s.app), name=f"ari-reader-{self.node_id}")
                opened_wait = asyncio.create_task(opened.wait())
                await asyncio.wait({reader, opened_wait}, return_when=asyncio.FIRST_COMPLETED)
                opened_wait.cancel()
            if not opened.is_set():
                await reader  # raises the connect error, if any
                raise AriUnavailable("event websocket ended while opening")
        except BaseException:
            await self._teardown(http, reader)
            if opened.is_set():  # keep markers paired: AriConnected was already emitted
                self._events.put(AriDisconnected("connect aborted"))
            raise
        assert reader is not None
        return http, reader

    def _on_ws_open(self, client: Any, opened: asyncio.Event) -> None:
        """Runs in the reader task right after the websocket opened and before aioari reads from it,
        so AriConnected precedes this connection's events and commands work once it is seen."""
        self._client = client
        self._events.put(AriConnected(resync=self._ever_connected))
        self._ever_connected = True
        opened.set()

    async def _serve(self, http: HttpClient, reader: asyncio.Task[None]) -> str | None:
        """Run until the connection ends; the reason, or None when the application was replaced."""
        heartbeat = asyncio.create_task(self._heartbeat(self._client), name=f"ari-heartbeat-{self.node_id}")
        replaced = asyncio.create_task(self._replaced.wait())
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({reader, heartbeat, replaced, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (heartbeat, replaced, closing):
                task.cancel()
            await self._teardown(http, reader)
        if self._replaced.is_set():
            return None
        if self._closing.is_set():
            return "closed"
        if heartbeat.done() and not heartbeat.cancelled():
            return heartbeat.result()
        exc = reader.exception() if reader.done() and not reader.cancelled() else None
        return f"websocket closed ({_brief(exc)})" if exc else "websocket closed"

    async def _teardown(self, http: HttpClient, reader: asyncio.Task[None] | None) -> None:
        """Forget the client, drop all connections, and wait (bounded) for the reader to end."""
        self._client = None
        self._generation += 1
        await http.close()
        if reader is not None and not reader.done():
            done, _ = await asyncio.wait({reader}, timeout=WS_CLOSE_WAIT + 1.0)
            if not done:
                reader.cancel()
                await asyncio.wait({reader})
        if reader is not None and not reader.cancelled():
            with contextlib.suppress(BaseException):
                reader.exception()  # mark retrieved; the reason is reported by _serve

    async def _heartbeat(self, client: Any) -> str:
        """Ping Asterisk forever; return why it stopped answering."""
        while True:
            await asyncio.sleep(self._s.heartbeat_interval)
            try:
                async with asyncio.timeout(self._s.heartbeat_timeout):
                    response = await client.swagger.asterisk.ping()
                    await response.read()
            except TimeoutError:
                return f"heartbeat: GET /asterisk/ping unanswered for {self._s.heartbeat_timeout} s"
            except Exception as exc:  # any failure (HTTP error, reset, ...) ends this connection
                return f"heartbeat: GET /asterisk/ping failed ({_brief(exc)})"

    def _on_raw(self, generation: int, raw: Mapping[str, Any]) -> None:
        """aioari listener (runs inside the reader task, must not block): decode and enqueue."""
        if generation != self._generation:
            return
        event = decode(raw)
        if isinstance(event, ApplicationReplaced):
            self._replaced.set()  # the marker is emitted by run() after teardown
        elif event is not None:
            self._events.put(event)


def _brief(exc: BaseException | None) -> str:
    """A short, secret-free description of an exception (type and message, no URLs with queries)."""
    if exc is None:
        return "no error"
    text = str(exc).split("?", 1)[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
