"""Cluster-wide order of the callers in one queue.

A caller's rank key is `(-priority, order, uid)`: higher priority first, then `order` (the arrival
sequence, or a fraction between two neighbours for a position override), then a unique id as a
tie-break. Keys never change while a caller is queued, so an override stays stable as others come and
go, and positions are O(log n) bisections of a SortedList.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

from sortedcontainers import SortedList

__all__ = ["QueueLine", "RankKey", "rank_key"]

RankKey = tuple[int, int | Fraction, int]
"""(-priority, order, uid); compares across queues too (orders are global arrival sequences)."""


def rank_key(priority: int, order: int | Fraction, uid: int) -> RankKey:
    """The rank key of a caller; lower sorts first."""
    return (-priority, order, uid)


class QueueLine:
    """The not-yet-connected callers (waiting or ringing) of one queue, in rank order."""

    __slots__ = ("_joined", "_ranks")

    def __init__(self) -> None:
        self._ranks = SortedList()
        # (joined_at, uid) of the same callers: longest wait in O(1) even when priorities reorder.
        self._joined = SortedList()

    def __len__(self) -> int:
        return len(self._ranks)

    def __iter__(self) -> Iterator[RankKey]:
        return iter(self._ranks)

    def order_for(self, priority: int, position: int, arrival_seq: int) -> int | Fraction:
        """The `order` for a new caller: its arrival sequence, or just before the caller now at
        `position` (1-based) among callers of the same priority when such a caller exists."""
        if position <= 0:
            return arrival_seq
        lo = self._ranks.bisect_left((-priority,))
        hi = self._ranks.bisect_left((-priority + 1,))
        idx = lo + position - 1
        if idx >= hi:
            return arrival_seq
        target: int | Fraction = self._ranks[idx][1]
        if idx == lo:
            return Fraction(target) - 1
        previous: int | Fraction = self._ranks[idx - 1][1]
        return (Fraction(previous) + Fraction(target)) / 2

    def add(self, key: RankKey, joined_at: float) -> None:
        """Insert a caller (O(log n))."""
        self._ranks.add(key)
        self._joined.add((joined_at, key[2]))

    def remove(self, key: RankKey, joined_at: float) -> None:
        """Remove a caller (O(log n))."""
        self._ranks.remove(key)
        self._joined.remove((joined_at, key[2]))

    def position(self, key: RankKey) -> int:
        """1-based position of a queued caller (O(log n))."""
        return int(self._ranks.bisect_left(key)) + 1

    def uids_joined_in(self, lo: float, hi: float) -> list[int]:
        """Uids of callers with lo < joined_at <= hi (O(log n + k))."""
        return [uid for _, uid in self._joined.irange((lo, math.inf), (hi, math.inf), inclusive=(False, True))]

    def oldest_joined_at(self) -> float | None:
        """Join time of the caller that has waited longest, or None when empty."""
        if not self._joined:
            return None
        joined: float = self._joined[0][0]
        return joined
