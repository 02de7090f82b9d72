"""Lists of numbers as people type them: ``"0"``, ``"0,1"``, ``"0-3,6"``.

One syntax for every flag that takes a set of numbers (the CPUs of ``xvrd pin-dom0``, the
seeds of ``xvrd simulate suite``), so an operator learns it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ITEM = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")  # ASCII digits only: int() takes others


def _above(digits: str, maximum: int) -> bool:
    """Whether ASCII ``digits`` name a number above ``maximum``, counted before int(),
    which refuses over 4300 digits with a message of its own."""
    return len(digits.lstrip("0")) > len(str(maximum)) or int(digits) > maximum


def parse_number(text: str, maximum: int) -> int:
    """``text`` as one number in [0, maximum]: ASCII digits only, where int() would also
    take "1_000", "+7" and other scripts' digits. ValueError otherwise."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{text!r} is not a number")
    if _above(text, maximum):
        raise ValueError(f"{text!r} goes above {maximum}")
    return int(text)


def parse_ranges(text: str, maximum: int, max_count: int | None = None) -> frozenset[int]:
    """The numbers ``text`` names, each in [0, maximum], at most ``max_count`` of them.

    Raises ValueError naming the item at fault when an item is neither a number nor a
    rising range, a number is above ``maximum``, or there are more than ``max_count``; a
    range is measured before it is expanded. Callers say what the numbers are.
    """
    numbers: set[int] = set()
    for raw in text.strip().split(","):
        item = raw.strip()
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{item!r} is not a number or a range like 0-3")
        first_text, last_text = match.group(1), match.group(2) or match.group(1)
        if any(_above(t, maximum) for t in (first_text, last_text)):
            raise ValueError(f"{item!r} goes above {maximum}")
        first, last = int(first_text), int(last_text)
        if last < first:
            raise ValueError(f"{item!r} runs backwards")
        if max_count is not None and last - first + 1 > max_count:
            raise ValueError(f"{item!r} makes more than {max_count}")  # before it is expanded
        numbers.update(range(first, last + 1))
        if max_count is not None and len(numbers) > max_count:
            raise ValueError(f"{item!r} makes more than {max_count}")
    return frozenset(numbers)


def format_ranges(numbers: Iterable[int]) -> str:
    """The inverse of `parse_ranges`: ``[0, 1, 2, 5]`` to ``"0-2,5"``; ``""`` for none."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
