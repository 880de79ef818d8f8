"""Which free text is one plain line (clusterq_common/text.py): control characters and line separators
are refused, ordinary text in any script is not."""

from __future__ import annotations

import pytest

from clusterq_common.text import plain_text_error
from coordinator.queue_log import _clean


@pytest.mark.parametrize("text", ["lunch", "昼休み\u3000外出", "12\u00a0h", "می\u200cروم", "café ☕"])
def test_ordinary_text_in_any_script_is_plain_and_kept_in_queue_log(text: str) -> None:
    assert plain_text_error("reason", text) is None
    assert _clean(text) == text


@pytest.mark.parametrize(("text", "cleaned"), [("a\nb", "a_b"), ("a\tb", "a_b"), ("a\x00b", "a_b"),
                                               ("a\u2028b", "a_b"), ("a\u2029b", "a_b"), ("a|b", "a_b")])
def test_line_breaking_characters_and_the_field_separator_are_refused_and_cleaned(text: str, cleaned: str) -> None:
    assert plain_text_error("reason", text) is not None
    assert _clean(text) == cleaned
