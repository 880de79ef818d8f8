"""Failover time: SIGKILL the leader of two replicas, time until the new leader's first Offer arrives.

Arrangement (per kill): the only agent is logged in but paused, and one caller waits on the
simulated node, acknowledged by the current leader, so no leader can offer before the unpause.
The bench then SIGKILLs the leader and, at once, unpauses the agent through the AdminClient (which
retries and follows the `clusterq-leader` trailer until a replica leads again). The figure is the
time from the SIGKILL to the first Offer stamped with an epoch above the killed leader's reaching
the simulated node; it therefore contains lease expiry (TTL 2 s), the election, the new leader's
start-up and settle, the node's reconnect (the real stasis-app client's backoff), the admin
client's retries and the dispatch. The killed replica is restarted (and campaigning) before the
next kill; the agent answers, the call ends, and the agent is paused again.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from clusterq_testing.bench.harness import QUEUE, Coordinators
from clusterq_testing.bench.load import drain
from clusterq_testing.bench.results import FailoverResult, FailoverSample
from clusterq_testing.bench.simnode import SimNode
from clusterq_testing.etcd import EtcdCluster

__all__ = ["failover"]

AGENT = "fo-agent"
NODE = "f1"


async def failover(etcd: EtcdCluster, log_dir: Path, prefix: str, kills: int = 10,
                   timeout: float = 30.0) -> FailoverResult:
    """`kills` leader kills on a two-replica cluster with lease TTL 2 s."""
    coords = Coordinators(etcd, log_dir, prefix, 2, lease_ttl=2.0, settle_time=2.0)
    node = SimNode(NODE, coords.addresses, QUEUE, answer_delay=0.01, talk_time=0.05)
    samples: list[FailoverSample] = []
    errors: list[str] = []
    try:
        await coords.start()
        await coords.create_queue()
        await node.start()
        await coords.login_agents({AGENT: NODE}, paused=True)
        for i in range(kills):
            try:
                samples.append(await _one_kill(coords, node, timeout))
            except (TimeoutError, RuntimeError, grpc.aio.AioRpcError) as exc:
                errors.append(f"kill {i + 1}: {type(exc).__name__}: {str(exc)[:240]}")
            for r in coords.replicas:
                if not r.proc.alive():
                    await coords.restart(r)
    finally:
        await node.stop()
        await coords.stop()
    return FailoverResult(tuple(samples), tuple(errors))


async def _wait(cond: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        await asyncio.sleep(0.002)


async def _one_kill(coords: Coordinators, node: SimNode, timeout: float) -> FailoverSample:
    await node.wait_connected(timeout)
    leader = await coords.leader(timeout)
    await coords.pause(AGENT, True)
    if not node.join() or await drain([node], timeout):
        raise TimeoutError("the waiting caller's join was not acknowledged")
    old_epoch = node.client.highest_epoch
    offers: list[tuple[int, int]] = []
    node.on_offer = lambda epoch, ns: offers.append((epoch, ns))
    registrations = len(node.registered_ns)
    unpaused: list[int] = []

    async def unpause() -> None:
        await coords.pause(AGENT, False)
        unpaused.append(time.perf_counter_ns())

    killed = time.perf_counter_ns()
    leader.proc.signal(signal.SIGKILL)
    task = asyncio.ensure_future(unpause())
    try:
        await _wait(lambda: any(e > old_epoch for e, _ in offers), "no Offer from a new epoch", timeout)
        await asyncio.wait_for(task, timeout)
    finally:
        node.on_offer = None
        task.cancel()
    stale = [e for e, _ in offers if e <= old_epoch]
    if stale:
        raise RuntimeError(f"Offer stamped with the killed leader's epoch {stale[0]} after the kill")
    new_epoch, offered = next((e, ns) for e, ns in offers if e > old_epoch)
    # The agent answers, the call is connected and ends: nothing is left for the next kill.
    await _wait(lambda: not node.callers, "the offered call did not end", timeout)
    reregistered = node.registered_ns[registrations] if len(node.registered_ns) > registrations else None

    def since(ns: int | None) -> float:
        return (ns - killed) / 1e9 if ns is not None else math.inf

    return FailoverSample(old_epoch=old_epoch, new_epoch=new_epoch, to_reregistered=since(reregistered),
                          to_unpaused=since(unpaused[0] if unpaused else None), to_offer=since(offered))
