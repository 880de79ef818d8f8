"""Cluster-wide order of the callers in one queue.

A caller's rank key is `(-priority, order, uid)`: higher priority first, then `order` (the arrival
sequence, or a fraction between two neighbours for a position override), then a unique id as a
tie-break. Keys never change while a caller is queued, so an override stays stable as others come and
go, and positions are O(log n) bisections (of a plain list while the line is short, else a SortedList).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator
from fractions import Fraction

from sortedcontainers import SortedList

__all__ = ["QueueLine", "RankKey", "rank_key"]

_SMALL = 4096
"""Longest line kept as a plain list (see QueueLine.__init__)."""

RankKey = tuple[int, int | Fraction, int]
"""(-priority, order, uid); compares across queues too (orders are global arrival sequences)."""


def rank_key(priority: int, order: int | Fraction, uid: int) -> RankKey:
    """The rank key of a caller; lower sorts first."""
    return (-priority, order, uid)


class LineTally:
    """How many callers stand in the lines sharing this tally (all queues of one engine), and in how
    many lines, kept by QueueLine itself: dispatch skips its pass over the idle agents when no caller
    waits anywhere, and takes a cheaper path when all of them wait in one queue."""

    __slots__ = ("callers", "lines")

    def __init__(self) -> None:
        self.callers = 0
        self.lines = 0


class QueueLine:
    """The not-yet-connected callers (waiting or ringing) of one queue, in rank order."""

    __slots__ = ("_by_arrival", "_joined", "_last_joined", "_ranks", "_tally")

    def __init__(self, tally: LineTally | None = None) -> None:
        self._tally = LineTally() if tally is None else tally
        # The rank keys in order: a plain list while the line is short, a SortedList once it outgrows
        # _SMALL (for good). Bisection, append and iteration of a plain list have no Python-level
        # overhead; its insert/delete move up to _SMALL pointers (32 KB, a memmove), which measured
        # no dearer than SortedList's bookkeeping up to ~10,000 keys even for removals at the head.
        self._ranks: list[RankKey] | SortedList = []
        # Join times of the same callers, for the longest wait and leavewhenempty's penalty bands.
        # While callers arrive in join-time order (live joins do) an insertion-ordered dict
        # uid -> joined_at is enough: its first entry is the longest waiter, O(1) to keep. A caller
        # out of order (a re-report, a caller put back) or a range query switches the line for good
        # to a SortedList of (joined_at, uid), O(log n) per change.
        self._by_arrival: dict[int, float] | None = {}
        self._last_joined = -math.inf
        self._joined: SortedList | None = None

    def __len__(self) -> int:
        return len(self._ranks)

    def __iter__(self) -> Iterator[RankKey]:
        return iter(self._ranks)

    def _bisect(self, key: tuple[int | Fraction, ...]) -> int:
        ranks = self._ranks
        return bisect_left(ranks, key) if isinstance(ranks, list) else int(ranks.bisect_left(key))

    def _at(self, index: int) -> RankKey:
        key: RankKey = self._ranks[index]
        return key

    def order_for(self, priority: int, position: int, arrival_seq: int) -> int | Fraction:
        """The `order` for a new caller: its arrival sequence, or just before the caller now at
        `position` (1-based) among callers of the same priority when such a caller exists."""
        if position <= 0:
            return arrival_seq
        lo = self._bisect((-priority,))
        hi = self._bisect((-priority + 1,))
        idx = lo + position - 1
        if idx >= hi:
            return arrival_seq
        target: int | Fraction = self._at(idx)[1]
        if idx == lo:
            return Fraction(target) - 1
        previous: int | Fraction = self._at(idx - 1)[1]
        return (Fraction(previous) + Fraction(target)) / 2

    def add(self, key: RankKey, joined_at: float) -> int:
        """Insert a caller (O(log n)); returns its 1-based position."""
        keys = self._ranks
        if not keys:
            self._tally.lines += 1
        if not keys or key > keys[-1]:
            # Live joins of one priority land at the end: the position is the length, no bisection.
            if isinstance(keys, list):
                keys.append(key)
            else:
                keys.add(key)
            position = len(keys)
        elif isinstance(keys, list):
            index = bisect_left(keys, key)
            keys.insert(index, key)
            position = index + 1
        else:
            keys.add(key)
            position = int(keys.bisect_left(key)) + 1
        if len(keys) > _SMALL and isinstance(keys, list):
            self._ranks = SortedList(keys)
        self._tally.callers += 1
        arrivals = self._by_arrival
        if arrivals is not None and joined_at >= self._last_joined:
            arrivals[key[2]] = joined_at
            self._last_joined = joined_at
        else:
            self._sorted_joined().add((joined_at, key[2]))
        return position

    def remove(self, key: RankKey, joined_at: float) -> None:
        """Remove a caller (O(log n)); ValueError if it is not in the line."""
        keys = self._ranks
        if not isinstance(keys, list):
            keys.remove(key)
        else:
            index = bisect_left(keys, key)
            if index == len(keys) or keys[index] != key:
                raise ValueError(f"{key!r} not in line")
            del keys[index]
        self._tally.callers -= 1
        if not keys:
            self._tally.lines -= 1
        if self._by_arrival is not None:
            del self._by_arrival[key[2]]
        else:
            self._sorted_joined().remove((joined_at, key[2]))

    def _sorted_joined(self) -> SortedList:
        """The (joined_at, uid) SortedList, built from the arrival-ordered dict the first time."""
        if self._joined is None:
            arrivals = self._by_arrival or {}
            self._joined = SortedList((joined_at, uid) for uid, joined_at in arrivals.items())
            self._by_arrival = None
        return self._joined

    def position(self, key: RankKey) -> int:
        """1-based position of a queued caller (O(log n))."""
        return self._bisect(key) + 1

    def uids_joined_in(self, lo: float, hi: float) -> list[int]:
        """Uids of callers with lo < joined_at <= hi, in (joined_at, uid) order (O(log n + k))."""
        joined = self._sorted_joined()
        return [uid for _, uid in joined.irange((lo, math.inf), (hi, math.inf), inclusive=(False, True))]

    def oldest_joined_at(self) -> float | None:
        """Join time of the caller that has waited longest, or None when empty."""
        if self._by_arrival is not None:
            return next(iter(self._by_arrival.values()), None)
        if not self._joined:
            return None
        joined: float = self._joined[0][0]
        return joined
