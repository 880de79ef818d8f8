"""The coordinator's entry point: the startup heap is kept out of later garbage collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

from coordinator.__main__ import freeze_startup_heap


class _Node:
    """Something that can sit in a reference cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def check_freezes_startup_heap(freeze: Callable[[], None]) -> None:
    """`freeze` collects the garbage there is, then puts every live object out of the collector's
    reach (shared with the stasis app's test: both entry points do this)."""
    gc.unfreeze()
    try:
        garbage_a, garbage_b = _Node(), _Node()
        garbage_a.other, garbage_b.other = garbage_b, garbage_a  # a cycle: only the collector frees it
        gone = weakref.ref(garbage_a)
        del garbage_a, garbage_b
        survivor = _Node()  # alive at "startup"
        before = gc.get_freeze_count()
        freeze()
        assert gone() is None, "the cycle was collected, not frozen"
        assert gc.get_freeze_count() > before
        # Frozen objects are out of the collector's reach: later collections never traverse them.
        assert not any(o is survivor for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_garbage_is_collected_then_the_live_heap_frozen() -> None:
    check_freezes_startup_heap(freeze_startup_heap)
