"""Lists of numbers as people type them: ``"0"``, ``"0,1"``, ``"0-3,6"``.

One syntax for every flag that takes a set of numbers (the CPUs of ``xvrd pin-dom0``, the
seeds of ``xvrd simulate suite``), so an operator learns it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ITEM = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")  # ASCII digits only: int() takes others


def parse_ranges(text: str, maximum: int, max_count: int | None = None) -> frozenset[int]:
    """The numbers ``text`` names, each in [0, maximum], at most ``max_count`` of them.

    Raises ValueError naming the item at fault when an item is neither a number nor a
    rising range, a number is above ``maximum``, or there are more than ``max_count``; a
    range is measured before it is expanded. Callers say what the numbers are.
    """
    numbers: set[int] = set()
    for item in text.strip().split(","):
        match = _ITEM.match(item.strip())
        if match is None:
            raise ValueError(f"{item.strip()!r} is not a number or a range like 0-3")
        if max(len(g.lstrip("0")) for g in match.groups("")) > len(str(maximum)):
            raise ValueError(f"{item.strip()!r} goes above {maximum}")  # before int() chokes
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"{item.strip()!r} runs backwards")
        if last > maximum:
            raise ValueError(f"{item.strip()!r} goes above {maximum}")
        if max_count is not None and (
            last - first + 1 > max_count or len(numbers | set(range(first, last + 1))) > max_count
        ):
            raise ValueError(f"{item.strip()!r} makes more than {max_count}")
        numbers.update(range(first, last + 1))
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
