"""QueueLine's join-time index: arrival-ordered while callers come in join-time order, sorted after."""

from __future__ import annotations

import random

import pytest

from coordinator.queue import ranking
from coordinator.queue.ranking import QueueLine, rank_key


def _reference(joined: dict[int, float], lo: float, hi: float) -> list[int]:
    return [uid for j, uid in sorted((j, uid) for uid, j in joined.items()) if lo < j <= hi]


def test_join_times_in_order_and_out_of_order_agree_with_a_reference() -> None:
    rng = random.Random(7)
    for out_of_order_at in (None, 50, 0):
        line = QueueLine()
        joined: dict[int, float] = {}
        keys = {}
        clock = 0.0
        for uid in range(1, 400):
            clock += rng.choice((0.0, 0.5, 1.0))
            at = clock - 30.0 if uid == out_of_order_at else clock
            keys[uid] = rank_key(rng.randrange(3), uid, uid)
            line.add(keys[uid], at)
            joined[uid] = at
            if rng.random() < 0.4:
                gone = rng.choice(sorted(joined))
                line.remove(keys.pop(gone), joined.pop(gone))
            assert line.oldest_joined_at() == (min(joined.values()) if joined else None)
            assert len(line) == len(joined)
        assert line.uids_joined_in(clock - 40.0, clock - 10.0) == _reference(joined, clock - 40.0, clock - 10.0)
        # After a range query the line keeps answering from the sorted index.
        uid = max(joined) + 1
        line.add(rank_key(0, uid, uid), clock + 1.0)
        joined[uid] = clock + 1.0
        assert line.oldest_joined_at() == min(joined.values())
        assert line.uids_joined_in(-1e9, 1e9) == _reference(joined, -1e9, 1e9)


def test_empty_line() -> None:
    line = QueueLine()
    assert line.oldest_joined_at() is None and line.uids_joined_in(0.0, 10.0) == []
    line.add(rank_key(0, 1, 1), 5.0)
    line.remove(rank_key(0, 1, 1), 5.0)
    assert line.oldest_joined_at() is None


def test_positions_agree_with_a_reference_across_the_switch_to_a_sorted_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking, "_SMALL", 20)
    rng = random.Random(11)
    line = QueueLine()
    ref: list[ranking.RankKey] = []
    for uid in range(1, 200):
        key = rank_key(rng.randrange(3), uid, uid)
        assert line.add(key, float(uid)) == sorted([*ref, key]).index(key) + 1
        ref = sorted([*ref, key])
        if rng.random() < 0.3:
            gone = ref.pop(rng.randrange(len(ref)))
            line.remove(gone, float(gone[2]))
        assert list(line) == ref and len(line) == len(ref)
        assert all(line.position(k) == i + 1 for i, k in enumerate(ref))
        with pytest.raises(ValueError):
            line.remove(rank_key(0, 10_000, 10_000), 0.0)
