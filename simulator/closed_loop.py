"""The daemon's own tick, driving a simulated host in batch mode.

A batch run advances the host by exactly one control interval, then calls the daemon's tick
through the simulator backend: the same sampling, assessment, policy and actuator code the
real-time daemon runs, only faster than real time. Used by `xvrd simulate --policy adaptive`
and the evaluation suite.
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from simulator.host import SimulatedHost
from simulator.report import Controller
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import given_settings
from xvrd.daemon import Daemon
from xvrd.policy.adaptive import AdaptivePolicy
from xvrd.policy.base import Policy


def daemon_controller(
    host: SimulatedHost, interval_s: float, policy: Policy | None = None
) -> Controller:
    """A controller running the daemon's tick; returns 1 for a tick that changed settings."""
    state_dir = tempfile.TemporaryDirectory(prefix="xvrd-batch-")
    settings = given_settings(
        backend="simulator",
        scenario=Path(host.scenario.name),
        state_dir=Path(state_dir.name),
        interval_s=interval_s,
        restore_on_exit=False,
    )
    daemon = Daemon(settings, SimulatorBackend(host, speed=None), policy or AdaptivePolicy())
    daemon.tick()  # the baseline sample

    def control(_host: SimulatedHost) -> int:
        before = daemon.actuator.applied
        daemon.tick()
        return 1 if daemon.actuator.applied > before else 0

    weakref.finalize(control, state_dir.cleanup)
    control.daemon = daemon  # type: ignore[attr-defined]
    return control


def adaptive_controller(host: SimulatedHost, interval_s: float) -> Controller:
    return daemon_controller(host, interval_s, AdaptivePolicy())
