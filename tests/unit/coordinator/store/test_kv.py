"""kv.py value types and the txn retry-safety rule."""

from __future__ import annotations

import pytest

from coordinator.store.kv import Compare, Delete, Get, Put, prefix_range_end, retry_is_safe


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/a/", b"/a0"), (b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")],
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_compare_builders_validate_operands() -> None:
    assert Compare.create(b"k", "=", 0) == Compare(b"k", "create", "=", 0)
    assert Compare.value(b"k", "!=", b"v").operand == b"v"
    with pytest.raises(TypeError):
        Compare.value(b"k", "=", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Compare.mod(b"k", "=", b"3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Compare(b"k", "create", "<=", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Compare(b"k", "lease", "=", 1)  # type: ignore[arg-type]


FENCE = Compare.create(b"/e/1a", "=", 7)


@pytest.mark.parametrize(
    ("compares", "success", "failure", "safe"),
    [
        # fenced writes elsewhere: the retry sees the same fence, re-puts the same values
        ([FENCE], [Put(b"/q/a", b"1"), Delete(b"/q/b")], [], True),
        # proclaim: a put keeps create_revision
        ([FENCE], [Put(b"/e/1a", b"addr")], [], True),
        # resign: deleting the fenced key flips the compare
        ([FENCE], [Delete(b"/e/1a")], [], False),
        # a prefix delete covering the fenced key
        ([FENCE], [Delete(b"/e/", prefix=True)], [], False),
        # create-if-absent: a retry after success reports failure
        ([Compare.create(b"/k", "=", 0)], [Put(b"/k", b"v")], [Get(b"/k")], False),
        # compare-and-swap on the value
        ([Compare.value(b"/k", "=", b"1")], [Put(b"/k", b"2")], [], False),
        ([Compare.mod(b"/k", "=", 3)], [Put(b"/k", b"2")], [], False),
        # a write in the failure branch that flips the compare
        ([Compare.version(b"/k", "=", 0)], [Put(b"/other", b"x")], [Put(b"/k", b"v")], False),
        # reads never flip anything
        ([Compare.value(b"/k", "=", b"1")], [Get(b"/k")], [Get(b"/k")], True),
        # a key that merely shares a prefix is not touched
        ([FENCE], [Put(b"/e/1ab", b"x")], [], True),
        ([], [Put(b"/k", b"v")], [], True),
    ],
)
def test_retry_is_safe(compares: list[Compare], success: list[Put | Delete | Get],
                       failure: list[Put | Delete | Get], safe: bool) -> None:
    assert retry_is_safe(compares, success, failure) is safe
