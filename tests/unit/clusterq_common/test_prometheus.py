"""The shared pieces of Prometheus text exposition (format 0.0.4): escaping, sample values, family
headers, read back by the strict test-side parser."""

from __future__ import annotations

import importlib.metadata
import math

import pytest

from clusterq_common.prometheus import CONTENT_TYPE, build_version, escape_help, escape_label, header, number
from clusterq_testing.exposition import parse


def test_the_content_type_is_format_0_0_4_in_utf8() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain", "plain"),
    ('a"b', 'a\\"b'),
    ("a\\b", "a\\\\b"),
    ("a\nb", "a\\nb"),
    ('\\"\n', '\\\\\\"\\n'),  # the backslash first: an escape's own backslash is never doubled
])
def test_label_values_escape_backslash_quote_and_line_feed(raw: str, escaped: str) -> None:
    assert escape_label(raw) == escaped


def test_help_text_escapes_backslash_and_line_feed_but_not_quotes() -> None:
    assert escape_help('say "hi" \\ then\nbye') == 'say "hi" \\\\ then\\nbye'


@pytest.mark.parametrize(("given", "text"), [
    (3, "3"), (0, "0"), (-2, "-2"), (0.25, "0.25"), (1e-7, "1e-07"), (12345678.5, "12345678.5"),
    (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
])
def test_numbers_are_written_as_prometheus_reads_them(given: float, text: str) -> None:
    assert number(given) == text


def test_a_family_written_with_header_reads_back_with_its_help_type_and_escaped_label() -> None:
    out: list[str] = []
    header(out, "clusterq_x_total", "counter", "Counted \\ things,\nper thing.")
    thing = escape_label('a"b\n')
    out.append(f'clusterq_x_total{{thing="{thing}"}} {number(7)}')
    header(out, "clusterq_y", "gauge", "A gauge.")
    out.append(f"clusterq_y {number(math.nan)}")
    out.append("")
    families = parse("\n".join(out))
    assert families["clusterq_x_total"].kind == "counter"
    assert families["clusterq_x_total"].help == "Counted \\ things,\nper thing."
    assert families["clusterq_x_total"].samples == {(("thing", 'a"b\n'),): 7.0}
    assert families["clusterq_y"].kind == "gauge"
    assert math.isnan(families["clusterq_y"].samples[()])


def test_the_build_version_is_the_installed_package_s() -> None:
    try:
        installed: str | None = importlib.metadata.version("clusterq")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    assert build_version() == installed
