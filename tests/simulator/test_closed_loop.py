"""The daemon's tick driving a simulated host: the changes it reports."""

from __future__ import annotations

from collections import deque

from simulator.closed_loop import adaptive_controller
from simulator.host import SimulatedHost
from simulator.scenario import report_scenario


def test_changes_beyond_the_actuators_history_are_counted_not_lost() -> None:
    """A pin changes nine affinities in one tick; with room for two in the history, the
    other seven are still counted at that tick."""
    host = SimulatedHost(report_scenario("receive", n_domus=8))
    control = adaptive_controller(host, 2.0)
    control.daemon.actuator.history = deque(maxlen=2)  # type: ignore[attr-defined]
    for _ in range(12):
        host.advance(2.0)
        control(host)
    changes = control.changes  # type: ignore[attr-defined]
    counted = [c for c in changes if c.record is None]
    assert counted
    pin_tick = counted[0].t_s
    at_pin = [c for c in changes if c.t_s == pin_tick]
    assert sum(c.more if c.record is None else 1 for c in at_pin) == 9
    assert counted[0].to_json() == {"t_s": pin_tick, "more": 7}
