"""An operator raises a waiting caller's priority (clusterq caller priority, like app_queue's
`queue priority caller`) on real Asterisk + etcd: that caller is the one bridged first, and its node
keeps the priority on the channel. What was bridged comes from the tests' observer app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusterq_testing.observer import AriObserver
from clusterq_testing.observer_types import AriHttpError
from tests.e2e.calls import agent_starts, answered_caller, bridged, until
from tests.e2e.conftest import Clusterq

pytestmark = pytest.mark.e2e


async def test_a_caller_an_operator_raised_is_bridged_before_the_earlier_one(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    [node] = await asterisk_factory(["a"])
    obs: AriObserver = await observers(node)
    await clusterq.start_coordinators(1)
    await clusterq.start_stasis([node])
    client = clusterq.client()
    first = await answered_caller(obs, "support", "801")
    second = await answered_caller(obs, "support", "802")

    for _ in range(200):  # until the leader holds both (their JoinAcks may still be on the way)
        if len((await client.snapshot("support", include_callers=True)).callers) == 2:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the two callers never queued")
    moved = await client.set_caller_priority(second.queue_id, 5)
    assert (moved.queue, moved.position, moved.priority) == ("support", 1, 5)
    for _ in range(200):  # the node writes it on the channel when the leader's decision arrives
        try:
            var = await obs.ari("GET", f"/channels/{second.queue_id}/variable", {"variable": "CLUSTERQ_PRIORITY"})
        except AriHttpError:
            var = None
        if var is not None:
            break
        await asyncio.sleep(0.05)
    assert var is not None and var["value"] == "5"

    obs.set_agent_behaviour("ann", "answer", delay=0.1)
    await client.login("ann", "Local/ann@clusterq-agents-test/n", "a", ["support"])
    await bridged(obs, second.queue_id)
    starts = await until(lambda: agent_starts(obs, "ann"), 10, "ann's first leg")
    assert starts[0].raw["channel"]["caller"]["number"] == "802"
    assert not [e for e in obs.events_of("ChannelEnteredBridge") if first.queue_id in e.raw["bridge"]["channels"]
                and len(e.raw["bridge"]["channels"]) == 2]
