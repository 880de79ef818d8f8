"""Which waiting caller abandons next in the load scenarios: a random one (default) or the oldest.

"random" is the abandonment of the Erlang A model that call-centre planning uses: each waiting
caller's patience is exponentially distributed (memoryless), so at any instant every waiting caller
is equally likely to be the next to hang up, wherever it stands in the queue.

"oldest" (every caller has the same patience) was the bench's only model before 2026-11-27. Under
overload it is degenerate: the leader offers the head of the queue, which is also the caller its
node is about to hang up, so nearly every offer is cancelled by that hangup (96 % in a profile of
the 5,000 and 10,000 events/s points) and agents are rung for callers that are already leaving.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Literal

__all__ = ["ABANDON_MODELS", "Abandon", "WaitingCallers"]

Abandon = Literal["random", "oldest"]
ABANDON_MODELS: tuple[Abandon, ...] = ("random", "oldest")


class WaitingCallers:
    """The acknowledged, unoffered callers of one simulated node; every operation is O(1)."""

    def __init__(self, abandon: Abandon, rng: random.Random) -> None:
        if abandon not in ABANDON_MODELS:
            raise ValueError(f"abandon must be one of {ABANDON_MODELS}, not {abandon!r}")
        self.model = abandon
        self._rng = rng
        # "oldest": insertion order. "random": a list for O(1) picks plus each id's index in it.
        self._order: OrderedDict[str, None] = OrderedDict()
        self._items: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._order) if self.model == "oldest" else len(self._items)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._order if self.model == "oldest" else call_id in self._index

    def add(self, call_id: str) -> None:
        """The caller waits (again): it may be picked to abandon from now on."""
        if self.model == "oldest":
            self._order[call_id] = None
        elif call_id not in self._index:
            self._index[call_id] = len(self._items)
            self._items.append(call_id)

    def discard(self, call_id: str) -> None:
        """The caller is offered, connected or gone: it no longer waits."""
        if self.model == "oldest":
            self._order.pop(call_id, None)
            return
        i = self._index.pop(call_id, None)
        if i is None:
            return
        last = self._items.pop()
        if last != call_id:  # move the last one into the hole
            self._items[i] = last
            self._index[last] = i

    def pick(self) -> str | None:
        """Remove and return the caller who abandons next (None when nobody waits)."""
        if self.model == "oldest":
            return self._order.popitem(last=False)[0] if self._order else None
        if not self._items:
            return None
        call_id = self._items[self._rng.randrange(len(self._items))]
        self.discard(call_id)
        return call_id
