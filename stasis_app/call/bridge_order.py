"""Callers of one queue on this node are connected in the order the leader offered them their agents.

The leader offers agents in queue order (priority, then arrival), and agent legs are created in that
order. But when several agents answer within a few milliseconds of each other, the bridges are built
by concurrent ARI requests (stop the music, create the bridge, add both channels) and can finish in
any order: a caller who waited less would be talking first. Operators count that as an order
inversion, as for app_queue. So the last step of a bridge, adding the channels, waits until every
caller of the same queue that was offered earlier and is already on its way to a bridge (its local
agent answered, its cross-node agent was connected, or its own bridge is being built) has been
bridged, at most ORDER_WAIT. A caller whose agent still rings is not waited for: that would hold
every answered agent in silence for as long as another agent lets its phone ring.

Offer order is the order in which this node received the leader's Offers (one stream, in decision
order); a re-offered caller takes a new place, as it does in the leader's own order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping

from stasis_app.call import records as r

__all__ = ["ORDER_WAIT", "BridgeOrder"]

# The longest a bridge waits for earlier callers' bridges. Building one takes a few ms; a cross-node
# agent's trunk leg can take tens of ms. Bounded, so a lost notification costs at most this much.
ORDER_WAIT = 0.1
_ON_THE_WAY = (r.RINGING, r.CONNECTING, r.CONNECTED)


class BridgeOrder:
    """Orders the final bridging step of the callers in `callers` (the NodeApp's live records)."""

    def __init__(self, callers: Mapping[str, r.Caller], wait: float = ORDER_WAIT) -> None:
        self._callers = callers
        self._wait = wait
        self._ranks = itertools.count(1)
        # Callers on their way to a bridge -> resolved once bridged (or given up).
        self._pending: dict[str, tuple[r.Caller, asyncio.Future[None]]] = {}

    def offered(self, c: r.Caller) -> None:
        """The leader offered an agent to `c` (its place in offer order)."""
        c.offer_rank = next(self._ranks)

    def on_the_way(self, c: r.Caller) -> None:
        """`c` will be bridged soon: later-offered callers of its queue wait for it."""
        if c.offer_rank == 0:  # connected without an Offer seen here (e.g. adopted after a restart)
            c.offer_rank = next(self._ranks)
        entry = self._pending.get(c.call_id)
        if entry is None or entry[0] is not c:
            self._pending[c.call_id] = (c, asyncio.get_running_loop().create_future())

    def done(self, c: r.Caller) -> None:
        """`c` was bridged, or will not be (failed, cancelled, gone)."""
        entry = self._pending.get(c.call_id)
        if entry is not None and entry[0] is c:
            del self._pending[c.call_id]
            if not entry[1].done():
                entry[1].set_result(None)

    def earlier(self, c: r.Caller) -> list[asyncio.Future[None]]:
        """The pending bridges `c` must let go first (pruning callers that are no longer on the way)."""
        out: list[asyncio.Future[None]] = []
        for call_id, (x, fut) in list(self._pending.items()):
            if self._callers.get(call_id) is not x or x.state not in _ON_THE_WAY:
                self.done(x)
            elif x is not c and x.args.queue == c.args.queue and x.offer_rank < c.offer_rank:
                out.append(fut)
        return out

    async def wait_turn(self, c: r.Caller) -> None:
        """Wait until every earlier-offered caller of `c`'s queue on its way to a bridge got there
        (at most ORDER_WAIT)."""
        earlier = self.earlier(c)
        if earlier:
            await asyncio.wait(earlier, timeout=self._wait)
