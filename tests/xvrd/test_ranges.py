"""Number lists as operators type them (CPUs, seeds)."""

from __future__ import annotations

import re

import pytest

from xvrd.ranges import format_ranges, parse_number, parse_ranges


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("0", {0}),
        (" 3 ", {3}),
        ("0,1", {0, 1}),
        ("0-3,6", {0, 1, 2, 3, 6}),
        ("2-2,1", {1, 2}),
        ("0010", {10}),
    ],
)
def test_lists_and_ranges(text: str, numbers: set[int]) -> None:
    assert parse_ranges(text, maximum=10) == numbers
    assert parse_ranges(format_ranges(numbers), maximum=10) == numbers


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("", "'' is not a number or a range"),
        ("a", "'a' is not a number"),
        ("1,", "'' is not a number"),
        ("-1", "'-1' is not a number"),
        ("1.5", "'1.5' is not a number"),
        ("0--2", "'0--2' is not a number"),
        ("3-1", "'3-1' runs backwards"),
        ("0-11", "'0-11' goes above 10"),
        ("1,11", "'11' goes above 10"),
        ("9" * 5000, "goes above 10"),  # named, not int()'s digit limit
        ("\u0663", "is not a number"),  # an Arabic-Indic 3: int() would take it
        ("\uff11", "is not a number"),  # a fullwidth 1
    ],
)
def test_refused_naming_the_item(text: str, fault: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fault)):
        parse_ranges(text, maximum=10)


def test_a_huge_range_is_refused_before_it_is_expanded() -> None:
    with pytest.raises(ValueError, match="makes more than 100"):
        parse_ranges(f"0-{2**62}", maximum=2**63 - 1, max_count=100)
    with pytest.raises(ValueError, match="'60-110' makes more than 100"):
        parse_ranges("0-50,60-110", maximum=1000, max_count=100)
    assert len(parse_ranges("0-99,0-99", maximum=1000, max_count=100)) == 100
    with pytest.raises(ValueError, match="'0-100' makes more than 100"):
        parse_ranges("0-100", maximum=1000, max_count=100)


def test_format_collapses_runs() -> None:
    assert format_ranges([5, 0, 1, 2, 2]) == "0-2,5"
    assert format_ranges([]) == ""


@pytest.mark.parametrize("text", ["", "+7", "1_000", "\u0665", " 5", "-1", "1.0"])
def test_a_number_is_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError, match="is not a number"):
        parse_number(text, 100)


def test_a_number_above_the_maximum_is_refused_before_it_is_read() -> None:
    assert parse_number("0065", 65) == 65
    for text in ("66", "9" * 5000):
        with pytest.raises(ValueError, match="goes above 65"):
            parse_number(text, 65)
