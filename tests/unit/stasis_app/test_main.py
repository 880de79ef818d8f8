"""The stasis app's entry point: the startup heap is kept out of later garbage collections."""

from __future__ import annotations

from stasis_app.__main__ import freeze_startup_heap
from tests.unit.coordinator.test_main import check_freezes_startup_heap


def test_garbage_is_collected_then_the_live_heap_frozen() -> None:
    check_freezes_startup_heap(freeze_startup_heap)
