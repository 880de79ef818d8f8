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
    """The acknowledged, unoffered callers of one simulated node; every operation is O(1).

    One structure serves both models: `_items` for random picks (a removal moves the last id into
    the hole) and `_index`, each id's place in `_items`, kept in arrival order for "oldest" (an
    OrderedDict: its first key is O(1) to reach, and updating a value does not move the key)."""

    def __init__(self, abandon: Abandon, rng: random.Random) -> None:
        if abandon not in ABANDON_MODELS:
            raise ValueError(f"abandon must be one of {ABANDON_MODELS}, not {abandon!r}")
        self.model = abandon
        self._rng = rng
        self._items: list[str] = []
        self._index: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._index

    def add(self, call_id: str) -> None:
        """The caller waits (again): it may be picked to abandon from now on."""
        if call_id not in self._index:
            self._index[call_id] = len(self._items)
            self._items.append(call_id)

    def discard(self, call_id: str) -> None:
        """The caller is offered, connected or gone: it no longer waits."""
        i = self._index.pop(call_id, None)
        if i is None:
            return
        last = self._items.pop()
        if last != call_id:  # move the last one into the hole
            self._items[i] = last
            self._index[last] = i

    def pick(self) -> str | None:
        """Remove and return the caller who abandons next (None when nobody waits)."""
        if not self._items:
            return None
        if self.model == "oldest":
            call_id = next(iter(self._index))
        else:
            call_id = self._items[self._rng.randrange(len(self._items))]
        self.discard(call_id)
        return call_id
