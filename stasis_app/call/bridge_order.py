"""Callers of one queue on this node are connected in the order the leader offered them their agents.

The leader offers agents in queue order (priority, then arrival), and agent legs are created in that
order. But when several agents answer within a few milliseconds of each other, the bridges are built
by concurrent ARI requests (stop the music, create the bridge, add both channels) and can finish in
any order, and the agents themselves answer with some jitter: a caller who waited less would be
talking first. Operators count that as an order inversion, as for app_queue. So the last step of a
bridge, adding the channels, first waits for the callers of the same queue that were offered earlier:

* those already on their way to a bridge (their local agent answered, their cross-node agent was
  connected, or their own bridge is being built), at most ORDER_WAIT;
* those whose agent still rings but was offered at most BURST before now (offers of one burst, e.g.
  several agents freed at once, whose answers jitter), at most RING_WAIT. An earlier offer ringing
  for longer is not waited for: a human agent letting the phone ring must not hold every other
  answered agent in silence.

Offer order is the order in which this node received the leader's Offers (one stream, in decision
order); a re-offered caller takes a new place, as it does in the leader's own order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from stasis_app.call import records as r

__all__ = ["BURST", "ORDER_WAIT", "RING_WAIT", "BridgeOrder"]

# The longest a bridge waits for earlier callers' bridges. Building one takes a few ms, a cross-node
# agent's trunk leg tens of ms; when 20 agents are freed at once (the bench's logins), the last
# bridges of the burst end ~150 ms after the first. Bounded, so a lost notification costs at most this.
ORDER_WAIT = 0.25
# The longest it waits for an earlier caller whose agent still rings, and how recent that offer must
# be: only offers that reached this node within BURST of each other (several agents freed at once
# get their offers in one decision batch) and answers that quick, i.e. auto-answering agents, never a
# human agent who picks up after seconds. (Bench, quiet machine: BURST 0.5 s gave p50 29 / 35 ms,
# 0.1 s gave 23 / 29 ms, announcements off / on; zero inversions with both.)
RING_WAIT = 0.25
BURST = 0.1
_ON_THE_WAY = (r.CONNECTING, r.CONNECTED)


@dataclass(eq=False)
class _Pending:
    caller: r.Caller
    done: asyncio.Future[None]
    offered_at: float
    answered: bool = False


class BridgeOrder:
    """Orders the final bridging step of the callers in `callers` (the NodeApp's live records)."""

    def __init__(self, callers: Mapping[str, r.Caller], wait: float = ORDER_WAIT, ring_wait: float = RING_WAIT,
                 burst: float = BURST) -> None:
        self._callers = callers
        self.wait, self.ring_wait, self.burst = wait, ring_wait, burst
        self._ranks = itertools.count(1)
        self._pending: dict[str, _Pending] = {}  # call id -> its latest offer, until bridged or given up

    def offered(self, c: r.Caller) -> None:
        """The leader offered an agent to `c`: its place in offer order."""
        c.offer_rank = next(self._ranks)
        self.done(c)  # a previous offer's entry (re-offered)
        self._track(c)

    def on_the_way(self, c: r.Caller) -> None:
        """`c` will be bridged soon (its agent answered): later-offered callers of its queue wait for it."""
        entry = self._pending.get(c.call_id)
        if entry is None or entry.caller is not c:
            if c.offer_rank == 0:  # connected without an Offer seen here (e.g. adopted after a restart)
                c.offer_rank = next(self._ranks)
            entry = self._track(c)
        entry.answered = True

    def _track(self, c: r.Caller) -> _Pending:
        loop = asyncio.get_running_loop()
        entry = self._pending[c.call_id] = _Pending(c, loop.create_future(), loop.time())
        return entry

    def done(self, c: r.Caller) -> None:
        """`c` was bridged, or will not be (failed, cancelled, gone)."""
        entry = self._pending.get(c.call_id)
        if entry is not None and entry.caller is c:
            del self._pending[c.call_id]
            if not entry.done.done():
                entry.done.set_result(None)

    def earlier(self, c: r.Caller, now: float) -> tuple[list[asyncio.Future[None]], list[asyncio.Future[None]]]:
        """(on their way, recently offered and ringing): the callers `c` lets go first, pruning those
        that are no longer waiting for a bridge."""
        on_the_way: list[asyncio.Future[None]] = []
        ringing: list[asyncio.Future[None]] = []
        for call_id, entry in list(self._pending.items()):
            x = entry.caller
            if self._callers.get(call_id) is not x or x.state not in (r.RINGING, *_ON_THE_WAY):
                self.done(x)
            elif x is c or x.args.queue != c.args.queue or x.offer_rank >= c.offer_rank:
                continue
            elif entry.answered or x.state in _ON_THE_WAY:
                on_the_way.append(entry.done)
            elif now - entry.offered_at <= self.burst:
                ringing.append(entry.done)
        return on_the_way, ringing

    async def wait_turn(self, c: r.Caller) -> None:
        """Wait until the earlier-offered callers of `c`'s queue that are about to be bridged got
        there (at most `wait`; for ones whose agent still rings, at most `ring_wait`)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            now = loop.time()
            elapsed = now - start
            on_the_way, ringing = self.earlier(c, now)
            if elapsed < self.ring_wait and (on_the_way or ringing):
                budget = min(self.wait, self.ring_wait) - elapsed if not on_the_way else self.wait - elapsed
            elif elapsed < self.wait and on_the_way:
                budget = self.wait - elapsed
            else:
                return
            # Wake when one of them is bridged (or gives up) to look again: a ringing one may have
            # been answered meanwhile and is then worth the longer wait.
            await asyncio.wait([*on_the_way, *ringing], timeout=budget, return_when=asyncio.FIRST_COMPLETED)
