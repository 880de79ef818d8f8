"""Test callers for either queue implementation, and waiting for them.

A caller is a Local pair with formats=ulaw: ;2 runs the dialplan into clusterq's Stasis() or
app_queue's Queue(), ;1 (the "phone") sits in the observer app. Callers are dialled with at most
`window` of them still joining (not one after the other: Answer() in app_queue's dialplan waits up
to 500 ms for media, so 300 serial joins would take minutes; and not in one burst: clusterq's stasis
app then fails ARI requests, see docs/benchmarks-asterisk.md). Join order is the order in which the
observer saw each ;2 start the queue application (ChannelDialplan Stasis / Queue): one websocket,
in Asterisk's publication order, and calls are dialled at least `pace` apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from clusterq_testing.bench_asterisk.analysis import timestamp
from clusterq_testing.observer import AriHttpError, AriObserver, ObservedEvent

__all__ = ["Caller", "Impl", "hangup_all", "hangup_everything", "place_callers", "wait_all", "wait_no_channels"]

# Concurrent REST requests when hanging up (Asterisk's HTTP server listens with backlog 10).
_PARALLEL = 8


class Impl(StrEnum):
    """The queue implementation under test."""

    CLUSTERQ = "clusterq"
    APP_QUEUE = "app_queue"

    @property
    def caller_context(self) -> str:
        """Dialplan context that sends a Local caller into this implementation's queue."""
        return "clusterq-callers" if self is Impl.CLUSTERQ else "clusterq-appqueue-callers"

    @property
    def queue_app(self) -> str:
        """The dialplan application a caller's ;2 half waits in."""
        return "Stasis" if self is Impl.CLUSTERQ else "Queue"


@dataclass(frozen=True)
class Caller:
    """One test caller: its join order and the ids of its two Local halves."""

    index: int  # join order, 0 = first
    phone_id: str  # ;1, in the observer app
    queue_id: str  # ;2, in Stasis(clusterq) or Queue()
    joined: float = 0.0  # Asterisk's timestamp (ms) of its entry into the queue application


def _entered(impl: Impl, pending: set[str]) -> Callable[[ObservedEvent], str | None]:
    def match(e: ObservedEvent) -> str | None:
        hit = (e.type == "ChannelDialplan" and e.channel_id in pending
               and e.raw.get("dialplan_app") == impl.queue_app)
        return e.channel_id if hit else None
    return match


def _ready(impl: Impl, phones: dict[str, str], qids: set[str]) -> Callable[[ObservedEvent], str | None]:
    # clusterq: the phone enters the observer app once clusterq answered ;2 (after it reported the
    # join to its leader); app_queue: ;2 started Queue() (it was answered just before).
    # `phones` and `qids` grow while callers are dialled: the matchers read them at match time.
    if impl is Impl.CLUSTERQ:
        return lambda e: phones.get(e.channel_id or "") if e.type == "StasisStart" else None
    return _entered(impl, qids)


async def place_callers(obs: AriObserver, impl: Impl, queue: str, count: int, tag: str, *,
                        window: int = 20, pace: float = 0.005, timeout: float = 60.0) -> tuple[Caller, ...]:
    """Dial `count` callers into `queue`, at most `window` of them not yet in the queue at any time
    and at least `pace` s apart; return them in join order once all wait."""
    node = obs.node.name
    mark = obs.mark()
    phones: dict[str, str] = {}  # phone id -> queue id
    qids: set[str] = set()
    ready_match = _ready(impl, phones, qids)
    ready: set[str] = set()
    scanned = mark
    deadline = time.monotonic() + timeout
    for i in range(count):
        while len(phones) - len(ready) >= window:
            scanned = _scan(obs, ready_match, scanned, ready)
            if len(phones) - len(ready) < window:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(phones) - len(ready)} callers not in {queue} after {timeout} s")
            with contextlib.suppress(TimeoutError):
                await obs.wait_for(lambda e: ready_match(e) is not None, 1.0, since=scanned)
        phone, qid = f"{node}-ph-{tag}-{i:04d}", f"{node}-q-{tag}-{i:04d}"
        phones[phone] = qid
        qids.add(qid)
        await obs.ari("POST", "/channels", {
            "endpoint": f"Local/{queue}@{impl.caller_context}/n",
            "app": obs.app, "appArgs": "caller",
            "channelId": phone, "otherChannelId": qid,
            # without formats a Local pair runs at slin192 and every frame is resampled (CPU x16)
            "formats": "ulaw",
            "callerId": f'"Bench {i}" <7{i:06d}>',
        })
        await asyncio.sleep(pace)
    missing = await wait_all(obs, qids - ready, ready_match, scanned,
                             max(1.0, deadline - time.monotonic()))
    if missing:
        raise TimeoutError(f"{len(missing)} of {count} callers not in {queue} after {timeout} s")
    entered = _entered(impl, qids)
    joined: dict[str, float] = {}  # in the order seen
    for e in obs.events[mark:]:
        hit = entered(e)
        if hit is not None and hit not in joined:
            joined[hit] = timestamp(e.raw)
    if len(joined) != count:
        raise RuntimeError(f"only {len(joined)} of {count} callers were seen entering {impl.queue_app}()")
    queue_of = {q: p for p, q in phones.items()}
    return tuple(Caller(i, queue_of[q], q, t) for i, (q, t) in enumerate(joined.items()))


def _scan(obs: AriObserver, match: Callable[[ObservedEvent], str | None], start: int, found: set[str]) -> int:
    """Add the ids `match` names in events[start:] to `found`; returns the new scan position."""
    end = len(obs.events)
    for e in obs.events[start:end]:
        hit = match(e)
        if hit is not None:
            found.add(hit)
    return end


async def wait_all(obs: AriObserver, ids: set[str], match: Callable[[ObservedEvent], str | None], since: int,
                   timeout: float) -> set[str]:
    """Wait until `match` named every id in `ids` (events from index `since` on); returns the ids it
    did not name before the timeout (empty when all were seen)."""
    found: set[str] = set()
    deadline = time.monotonic() + timeout
    scanned = since
    while True:
        scanned = _scan(obs, match, scanned, found)
        pending = ids - found
        if not pending or time.monotonic() > deadline:
            return pending
        with contextlib.suppress(TimeoutError):
            await obs.wait_for(lambda e: match(e) is not None, max(0.01, deadline - time.monotonic()),
                               since=scanned)


async def _hangup(obs: AriObserver, channel_id: str, gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            await obs.hangup(channel_id)
        except AriHttpError as e:
            if e.status != 404:  # 404: already gone
                raise


async def hangup_all(obs: AriObserver, callers: tuple[Caller, ...]) -> None:
    """Hang up every caller's phone (its ;2 half goes with it), then wait until no channel is left."""
    gate = asyncio.Semaphore(_PARALLEL)
    await asyncio.gather(*(_hangup(obs, c.phone_id, gate) for c in callers))
    await wait_no_channels(obs)


async def hangup_everything(obs: AriObserver) -> None:
    """Clean-up after a failed step: hang up every channel on the node, wait until none is left."""
    gate = asyncio.Semaphore(_PARALLEL)
    await asyncio.gather(*(_hangup(obs, cid, gate) for cid in await obs.channel_ids()))
    await wait_no_channels(obs)


async def wait_no_channels(obs: AriObserver, timeout: float = 30.0) -> None:
    """Wait until the node has no channel at all."""
    deadline = time.monotonic() + timeout
    while left := await obs.channel_ids():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(left)} channels still up after {timeout} s, e.g. {left[:3]}")
        await asyncio.sleep(0.2)
