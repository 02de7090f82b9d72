"""The daemon's own tick, driving a simulated host in batch mode.

A batch run advances the host by exactly one control interval, then calls the daemon's tick
through the simulator backend: the same sampling, assessment, policy and actuator code the
real-time daemon runs, only faster than real time. Used by `xvrd simulate --policy adaptive`
and the evaluation suite.
"""

from __future__ import annotations

import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from simulator.host import SimulatedHost
from simulator.report import Controller
from xvrd.actuator import ActionRecord
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import given_settings
from xvrd.daemon import Daemon
from xvrd.policy.adaptive import AdaptivePolicy
from xvrd.policy.base import Policy


@dataclass(frozen=True, slots=True)
class Change:
    """A setting the daemon changed, at the simulated time of the tick that changed it; or
    (``record`` None) how many more that tick changed than the actuator's history holds."""

    t_s: float
    record: ActionRecord | None
    more: int = 0

    def to_json(self) -> dict[str, object]:
        r = self.record
        if r is None:
            return {"t_s": self.t_s, "more": self.more}
        return {"t_s": self.t_s, "domain": r.domain, "setting": r.setting, "old": r.old,
                "new": r.new, "reason": r.reason}  # fmt: skip


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

    changes: list[Change] = []

    def control(host_now: SimulatedHost) -> int:
        before = daemon.actuator.applied
        seen = {id(r) for r in daemon.actuator.history}
        daemon.tick()
        t_s = host_now.now_ns / 1e9
        new = [r for r in daemon.actuator.history if r.applied and id(r) not in seen]
        changes.extend(Change(t_s, r) for r in new)
        applied = daemon.actuator.applied - before
        if applied > len(new):  # a pin over more domains than the history holds
            changes.append(Change(t_s, None, applied - len(new)))
        return 1 if applied else 0

    weakref.finalize(control, state_dir.cleanup)
    control.daemon = daemon  # type: ignore[attr-defined]
    control.changes = changes  # type: ignore[attr-defined]
    return control


def adaptive_controller(host: SimulatedHost, interval_s: float) -> Controller:
    return daemon_controller(host, interval_s, AdaptivePolicy())
