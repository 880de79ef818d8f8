"""The coordinator's entry point: the startup heap is kept out of later garbage collections."""

from __future__ import annotations

import gc

from coordinator.__main__ import freeze_startup_heap


def test_startup_heap_is_frozen_and_collections_skip_it() -> None:
    gc.unfreeze()
    try:
        marker = [object()]  # alive at "startup"
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000  # the modules, descriptors and grpc imported so far
        # A full collection no longer sees objects that existed when the heap was frozen.
        assert not any(o is marker for o in gc.get_objects())
        assert gc.is_tracked(marker)
    finally:
        gc.unfreeze()
