"""The load scenarios' abandonment models: which waiting caller hangs up next."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterq_testing.bench.waiting import ABANDON_MODELS, Abandon, WaitingCallers


def _set(abandon: Abandon, seed: int = 1) -> WaitingCallers:
    return WaitingCallers(abandon, random.Random(seed))


def test_oldest_picks_in_arrival_order_and_a_requeued_caller_goes_last() -> None:
    w = _set("oldest")
    for c in ("a", "b", "c"):
        w.add(c)
    w.discard("a")  # offered
    w.add("a")  # its offer was cancelled: it waits again, behind the others
    assert [w.pick(), w.pick(), w.pick(), w.pick()] == ["b", "c", "a", None]


def test_random_picks_everyone_once_and_empties() -> None:
    w = _set("random")
    ids = [f"c{i}" for i in range(50)]
    for c in ids:
        w.add(c)
    picked = [w.pick() for _ in ids]
    assert sorted(p for p in picked if p is not None) == sorted(ids)
    assert picked != ids  # not arrival order
    assert len(w) == 0 and w.pick() is None


def test_random_is_uniform_over_queue_positions() -> None:
    # Erlang A: every waiting caller equally likely to abandon next, wherever it stands.
    counts: Counter[str] = Counter()
    rng = random.Random(7)
    for _ in range(6000):
        w = WaitingCallers("random", rng)
        for c in ("first", "middle", "last"):
            w.add(c)
        pick = w.pick()
        assert pick is not None
        counts[pick] += 1
    assert all(1800 < counts[c] < 2200 for c in ("first", "middle", "last")), counts


def test_same_seed_same_choices() -> None:
    a, b = _set("random", 3), _set("random", 3)
    for w in (a, b):
        for i in range(20):
            w.add(str(i))
    assert [a.pick() for _ in range(20)] == [b.pick() for _ in range(20)]


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="abandon must be one of"):
        WaitingCallers("newest", random.Random(0))  # type: ignore[arg-type]


@given(st.sampled_from(ABANDON_MODELS),
       st.lists(st.tuples(st.sampled_from(["add", "discard", "pick"]), st.integers(0, 9)), max_size=80))
def test_behaves_like_a_set(abandon: Abandon, ops: list[tuple[str, int]]) -> None:
    """Against a plain set: same members, picks only members, discarding a non-member is harmless."""
    w, model = _set(abandon), set()
    for op, n in ops:
        c = f"c{n}"
        if op == "add":
            w.add(c)
            model.add(c)
        elif op == "discard":
            w.discard(c)
            model.discard(c)
        else:
            pick = w.pick()
            if model:
                assert pick in model
                model.discard(pick)
            else:
                assert pick is None
        assert len(w) == len(model)
        assert all(m in w for m in model)
