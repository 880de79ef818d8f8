"""Helpers the end-to-end tests share: waiting for a condition, a caller answered by clusterq, and what
the tests' observer saw of agent legs and bridges (never what clusterq reports about itself)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from clusterq_testing.observer import AriObserver, CallerLegs, ObservedEvent


async def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """`cond()`'s first truthy value, polled every 50 ms; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def answered_caller(obs: AriObserver, args: str, number: str = "100") -> CallerLegs:
    """A caller answered by clusterq (its phone half is up in the test app)."""
    legs = await obs.originate_caller(args, caller_number=number)
    await obs.wait_for_type("StasisStart", legs.phone_id, timeout=10)
    return legs


def agent_starts(obs: AriObserver, agent: str) -> list[ObservedEvent]:
    """The agent legs of `agent` that reached the test app's phones (StasisStart agent,<agent>)."""
    return [e for e in obs.events_of("StasisStart") if e.args[:2] == ("agent", agent)]


async def bridged(obs: AriObserver, channel_id: str, timeout: float = 10.0) -> ObservedEvent:
    """The ChannelEnteredBridge that put channel_id in a bridge with a second channel."""
    return await obs.wait_for(lambda e: e.type == "ChannelEnteredBridge" and channel_id in e.raw["bridge"]["channels"]
                              and len(e.raw["bridge"]["channels"]) == 2, timeout=timeout)
