"""Aggregate, Jain index, efficiency and which domUs are network-active."""

from __future__ import annotations

import pytest

from xvrd.analysis import assess, jain_index
from xvrd.backends.base import Pinning
from xvrd.sampler import DomainRates, Observation

from .conftest import TWO_CPUS

P = Pinning((frozenset({0, 1}),))


def dom(
    domid: int, rx: float, tx: float = 0.0, cpu: float = 1.0, drops: float = 0.0
) -> DomainRates:
    return DomainRates(f"u{domid}", domid, f"d{domid}", domid, 1, 256, 0, P, rx, tx, 0.0, 0.0,
                       drops, 0.0, cpu)  # fmt: skip


def test_jain_index_bounds() -> None:
    assert jain_index([100, 100, 100]) == pytest.approx(1.0)
    assert jain_index([300, 0, 0]) == pytest.approx(1 / 3)
    assert jain_index([]) == 1.0


def test_assessment_of_a_complete_observation() -> None:
    obs = Observation(0, 2.0, TWO_CPUS, (dom(0, 0, cpu=45), dom(1, 600, 20, 10), dom(2, 300, 10, 5),
                                  dom(3, 0.1, cpu=1), dom(4, 0.0, drops=300.0),
                                  dom(5, 0.0, drops=0.5)))  # fmt: skip
    a = assess(obs, link_frame_mbps=984.0, active_threshold_mbps=0.5)
    # u3 moves too little; u4's traffic is being dropped; u5 drops a stray frame now and then
    assert a.network_active == ("u1", "u2", "u4")
    assert a.aggregate_mbps == pytest.approx(900.0)
    assert a.jain == pytest.approx(900**2 / (3 * (600**2 + 300**2)))
    assert a.efficiency == pytest.approx(900 / 984)
    assert a.dom0_cpu_pct == 45
    assert a.idle_pct == pytest.approx(100 - 45 - 10 - 5 - 1 - 1 - 1)


def test_incomplete_observation_is_not_assessed() -> None:
    obs = Observation(0, None, TWO_CPUS, (dom(0, 0),))
    with pytest.raises(ValueError, match="incomplete"):
        assess(obs, 984.0, 0.5)
