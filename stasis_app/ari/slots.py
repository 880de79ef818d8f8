"""`RequestSlots`: how many ARI requests run at once, and which go first.

Asterisk's HTTP server listens with a backlog of 10, so a node keeps at most 10 requests in flight.
Under load (hundreds of callers hearing prompts) the slots were all taken by requests that cannot be
hurried: ARI runs a channel's synchronous commands on the channel's own thread, so a variable set while
a prompt plays returns only when the prompt ends (seconds). Bridging a caller then queued behind them.
So: background requests (variables, prompts, music) may hold at most `background_limit` slots, the rest
stay free for the requests a caller is waiting for (answer, originate, bridge, continue, hangup), and a
freed slot goes to a waiting urgent request first. The wait for a slot is not part of a request's time-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator

__all__ = ["RequestSlots"]


class RequestSlots:
    """A counting semaphore with two classes of waiters (see the module docstring)."""

    def __init__(self, size: int, background_limit: int) -> None:
        if not 0 < background_limit <= size:
            raise ValueError("need 0 < background_limit <= size")
        self.size, self.background_limit = size, background_limit
        self.busy = 0
        self.busy_background = 0
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()
        self._ids = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool) -> AsyncIterator[None]:
        """Hold one slot for the block."""
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release(urgent)

    def _may_start(self, urgent: bool) -> bool:
        if self.busy >= self.size:
            return False
        return urgent or self.busy_background < self.background_limit

    async def _acquire(self, urgent: bool) -> None:
        queue = self._urgent if urgent else self._background
        if not queue and (urgent or not self._urgent) and self._may_start(urgent):
            self._take(urgent)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted just as we were cancelled: give it back
                self._release(urgent)
            else:
                queue.remove(waiter)
            raise

    def _take(self, urgent: bool) -> None:
        self.busy += 1
        if not urgent:
            self.busy_background += 1

    def _release(self, urgent: bool) -> None:
        self.busy -= 1
        if not urgent:
            self.busy_background -= 1
        self._wake()

    def _wake(self) -> None:
        # Hand free slots to waiters, urgent ones first; a granted slot is counted at once.
        for urgent, queue in ((True, self._urgent), (False, self._background)):
            while queue and self._may_start(urgent):
                waiter = queue.popleft()
                if not waiter.done():
                    self._take(urgent)
                    waiter.set_result(None)
