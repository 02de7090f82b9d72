"""The event core: ordering, tie-breaks, the clock."""

from __future__ import annotations

from simulator.engine import Engine


def test_events_run_in_time_order_and_ties_in_insertion_order() -> None:
    """Equal times run in the order they were scheduled, so runs are reproducible."""
    engine = Engine()
    seen: list[str] = []
    engine.at(20, seen.append, "c")
    engine.at(10, seen.append, "a")
    engine.at(10, seen.append, "b")
    engine.run_until(100)
    assert seen == ["a", "b", "c"]
    assert engine.now == 100


def test_run_until_leaves_later_events_and_never_goes_back() -> None:
    """Events after the horizon wait; an event scheduled in the past runs now."""
    engine = Engine()
    seen: list[int] = []
    engine.at(50, lambda: seen.append(engine.now))
    engine.run_until(40)
    assert seen == []
    engine.at(5, lambda: seen.append(engine.now))
    engine.run_until(60)
    assert seen == [40, 50]
