"""The leader lifecycle: session, campaign, leader work in ONE TaskGroup, step-down, fenced writes.

Guarantees:
- leader work (`lead(fence)`) runs inside one asyncio.TaskGroup that is cancelled as soon as
  the session is lost, i.e. no later than `ttl` after the last acknowledged keepalive was sent,
  which is before etcd can expire the lease and let another candidate in (session.py);
- every write made through `fenced_txn` is refused by etcd once this leader's key is gone, so a
  leader that is paused past its lease and has not noticed still cannot write;
- on graceful shutdown (cancellation) leader work is cancelled and awaited first, then the key
  is deleted (resign) and the lease revoked, so a successor starts within milliseconds.
Non-guarantees: `lead` must stop promptly when cancelled (the group awaits it); side effects
outside etcd are not fenced (use the epoch to let their receivers reject stale leaders).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from coordinator.election.election import Election, Fence, FenceLost
from coordinator.election.session import MIN_TTL, Clock, MonotonicClock, Session, SessionLost
from coordinator.store.kv import Compare, Get, KvError, KvPort, Op, TxnResult

__all__ = [
    "ElectionTiming",
    "FenceLost",  # re-exported: callers of fenced_txn catch it from here
    "LeadershipLost",
    "fenced_txn",
    "run_elected",
]

log = logging.getLogger(__name__)

Lead = Callable[[Fence], Awaitable[None]]
OnState = Callable[[bool, int], None]


class LeadershipLost(Exception):
    """Raised by run_elected(rejoin=False) after this replica led and then lost leadership."""


@dataclass(frozen=True)
class ElectionTiming:
    """Election timing knobs, validated when built (before any I/O)."""

    # Lease TTL (s). A dead leader is replaced about ttl + 0..0.5 s after its last keepalive.
    ttl: float = 2.0
    # Lease refresh period (s); None = ttl/3 (etcd's own choice). Must allow two refreshes per TTL.
    keepalive_interval: float | None = None
    # Pause (s) before campaigning again after an etcd error or a lost session.
    retry_backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.ttl < MIN_TTL:
            raise ValueError(f"ttl must be >= {MIN_TTL} s (etcd's minimum lease TTL)")
        if not 0 < self.interval < self.ttl / 2:
            raise ValueError("keepalive_interval must be in (0, ttl/2)")
        if self.retry_backoff < 0:
            raise ValueError("retry_backoff must be >= 0")

    @property
    def interval(self) -> float:
        """The effective keepalive interval."""
        return self.ttl / 3 if self.keepalive_interval is None else self.keepalive_interval


async def fenced_txn(
    kv: KvPort,
    fence: Fence,
    success_ops: Sequence[Op],
    extra_compares: Sequence[Compare] = (),
    failure_ops: Sequence[Op] = (),
) -> TxnResult:
    """A txn guarded by fence.compare() (always first); raises FenceLost when the fence fails.

    With extra compares, a failed txn whose fence still holds returns succeeded=False (and the
    responses of failure_ops only).
    """
    # A trailing Get of the fence key in the failure branch tells "fence lost" from "an extra
    # compare failed" in the same round trip.
    result = await kv.txn((fence.compare(), *extra_compares), success_ops, (*failure_ops, Get(fence.key)))
    if result.succeeded:
        return result
    probe = result.responses[-1].kvs
    if not probe or probe[0].create_revision != fence.revision:
        raise FenceLost(f"leader key {fence.key!r} is no longer at epoch {fence.epoch}")
    return TxnResult(False, result.revision, result.responses[:-1])


class _Lost(Exception):
    """Internal: ends the leader TaskGroup when the session is lost."""


class _Returned(Exception):
    """Internal: ends the leader TaskGroup when lead() returns."""


async def _lead_until_lost(session: Session, fence: Fence, lead: Lead,
                           step_down_delay: float = 0.0) -> Literal["lost", "returned"]:
    async def watch_session() -> None:
        await session.lost.wait()
        if step_down_delay:
            # Fault injection (tests only): a leader that notices its loss late, as after a GC
            # pause between a check and an action. Fencing alone must then refuse its work.
            log.warning("fault injection: stepping down %.1f s late", step_down_delay)
            await asyncio.sleep(step_down_delay)
        raise _Lost(session.lost_reason)

    async def run_lead() -> None:
        await lead(fence)
        raise _Returned

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(watch_session(), name="leader-session-watch")
            group.create_task(run_lead(), name="leader-work")
    except BaseExceptionGroup as eg:
        lost, rest = eg.split((_Lost, FenceLost))
        returned, rest = rest.split(_Returned) if rest is not None else (None, None)
        if lost is not None:
            log.warning("leadership at epoch %d lost: %s", fence.epoch, lost.exceptions[0])
            if rest is not None:  # lead() failed while being cancelled for the loss
                log.warning("leader work failed on step-down", exc_info=rest)
            return "lost"
        if rest is not None:
            # lead() failed on its own: propagate the error itself when there is only one.
            if len(rest.exceptions) == 1 and not isinstance(rest.exceptions[0], BaseExceptionGroup):
                raise rest.exceptions[0] from None
            raise rest from None
        assert returned is not None
        return "returned"
    raise AssertionError("leader TaskGroup ended without an outcome")  # one child always raises


async def _campaign(election: Election, session: Session, value: bytes, timing: ElectionTiming,
                    clock: Clock) -> Fence:
    while True:
        try:
            return await election.campaign(session, value)
        except KvError as e:
            # Same lease, same key: the README's measured fix for raft hiccups mid-campaign.
            log.info("campaign failed (%s); retrying with the same session", e)
            if session.lost.is_set():
                raise SessionLost(session.lost_reason) from e
            await clock.sleep(timing.retry_backoff)


async def _term(kv: KvPort, election: Election, value: bytes, timing: ElectionTiming, lead: Lead,
                on_state: OnState | None, clock: Clock,
                step_down_delay: float = 0.0) -> Literal["lost", "returned", "never"]:
    """One session: campaign, lead until lost/returned, then resign and revoke."""
    session = Session(kv, timing.ttl, keepalive_interval=timing.keepalive_interval, clock=clock)
    fence: Fence | None = None
    try:
        try:
            await session.start()
            fence = await _campaign(election, session, value, timing, clock)
        except (SessionLost, KvError) as e:
            log.info("election term ended before leading: %s", e)
            return "never"
        log.info("leading at epoch %d (%r)", fence.epoch, fence.key)
        if on_state is not None:
            on_state(True, fence.epoch)
        try:
            return await _lead_until_lost(session, fence, lead, step_down_delay)
        finally:
            if on_state is not None:
                on_state(False, fence.epoch)
    finally:
        # Leader work is over (the TaskGroup awaited it). Resign if the lease may still be
        # alive, then revoke, so a successor does not wait for the TTL.
        if fence is not None and not session.lost.is_set():
            with contextlib.suppress(KvError, FenceLost, TimeoutError):
                async with asyncio.timeout(timing.ttl):
                    await election.resign(fence)
        await session.close(revoke=True)


async def run_elected(
    kv: KvPort,
    prefix: bytes,
    value: bytes,
    ttl: float,
    lead: Lead,
    on_state: OnState | None = None,
    *,
    keepalive_interval: float | None = None,
    retry_backoff: float = 0.5,
    rejoin: bool = True,
    clock: Clock | None = None,
    step_down_delay: float = 0.0,
) -> None:
    """Campaign forever; while leader run `lead(fence)`, cancelled the moment leadership is lost.

    on_state(True, epoch) is called on winning, on_state(False, epoch) when that term ends.
    After a loss, campaign again with a fresh session (rejoin=True) or raise LeadershipLost.
    Returns (after resigning) when lead() returns; an exception from lead() propagates after
    resigning. Cancel the task running this to shut down gracefully.
    """
    timing = ElectionTiming(ttl, keepalive_interval, retry_backoff)
    clk = clock or MonotonicClock()
    election = Election(kv, prefix)
    while True:
        outcome = await _term(kv, election, value, timing, lead, on_state, clk, step_down_delay)
        if outcome == "returned":
            return
        if outcome == "lost" and not rejoin:
            raise LeadershipLost("leadership lost and rejoin=False")
        await clk.sleep(timing.retry_backoff)
