"""Per-key ordered execution of ARI actions: in order for one call, in parallel across calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class KeyedSerializer:
    """Runs coroutines for the same key one after the other; different keys run concurrently."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[None]] = {}

    def run(self, key: str, action: Callable[[], Awaitable[None]], what: str = "") -> None:
        """Schedule `action` after every earlier action of `key`; errors are logged, not raised."""
        prev = self._tails.get(key)

        async def chained() -> None:
            if prev is not None:
                await asyncio.gather(prev, return_exceptions=True)
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failed ARI call must not stop the node
                log.info("action %s for %s failed: %s", what or action, key, exc)

        task = asyncio.ensure_future(chained())
        self._tails[key] = task
        def forget(t: asyncio.Task[None], k: str = key) -> None:
            if self._tails.get(k) is t:
                del self._tails[k]

        task.add_done_callback(forget)

    async def drain(self) -> None:
        """Wait for every scheduled action (tests, shutdown)."""
        while self._tails:
            await asyncio.gather(*list(self._tails.values()), return_exceptions=True)

    def cancel_all(self) -> None:
        """Cancel everything pending (shutdown)."""
        for t in self._tails.values():
            t.cancel()
        self._tails.clear()
