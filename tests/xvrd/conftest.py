"""Fixtures for the daemon core: a simulated host in batch mode and settings around it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from simulator.scenario import report_scenario
from xvrd.analysis import assess
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import Settings
from xvrd.policy.adaptive import AdaptivePolicy
from xvrd.policy.base import Decision, PolicyContext
from xvrd.sampler import Observation

#: The online CPUs of the hand-made observations' host.
TWO_CPUS = frozenset({0, 1})

#: The link the hand-made observations are measured against: 1 Gb/s in frame bytes.
LINK_FRAME_MBPS = 984.0


def drive(ticks: list[Observation], context: PolicyContext) -> list[Decision]:
    """A fresh adaptive policy's decisions on ``ticks``, one after another."""
    policy = AdaptivePolicy()
    state = None
    decisions = []
    for obs in ticks:
        decision = policy.decide(obs, assess(obs, LINK_FRAME_MBPS, 0.5), context, state)
        state = decision.state
        decisions.append(decision)
    return decisions


@pytest.fixture
def backend() -> SimulatorBackend:
    """Receive on 4 domUs; the clock moves only when a test advances it."""
    return SimulatorBackend.from_scenario(report_scenario("receive", n_domus=4), speed=None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        backend="simulator",
        scenario=Path("unused.toml"),
        state_dir=tmp_path / "state",
        socket_path=tmp_path / "xvrd.sock",
    )


@pytest.fixture
def default_logging() -> Iterator[None]:
    """structlog as the daemon configures it at level info, restored afterwards: a batch
    command run earlier in the session (`xvrd simulate`) leaves it filtering below error,
    which capture_logs would not see past."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.configure(**saved)
