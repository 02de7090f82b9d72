"""Aggregate, Jain index over active domUs, efficiency and findings."""

from __future__ import annotations

import pytest

from xvrd.analysis import assess, jain_index
from xvrd.backends.base import Domain, Pinning, SchedParams
from xvrd.sampler import DomainRates, Observation


def rates(domid: int, rx: float, tx: float = 0.0) -> DomainRates:
    return DomainRates(
        Domain(domid, f"d{domid}", f"u{domid}", domid, 1),
        SchedParams(256),
        Pinning(),
        rx,
        tx,
        10.0,
        0.0,
    )


def obs(*domains: DomainRates, idle: float = 0.0) -> Observation:
    return Observation(0, 2.0, 2, (rates(0, 0.0), *domains), 40.0, idle)


def test_jain_index_bounds() -> None:
    """1 when equal, 1/n when one domain takes all, None with nobody."""
    assert jain_index([5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_index([9.0, 0.0, 0.0]) == pytest.approx(1 / 3)
    assert jain_index([]) is None


def test_idle_domus_do_not_count_for_jain() -> None:
    """Jain is over network-active domUs; dom0 and idle domUs are left out."""
    a = assess(obs(rates(1, 400.0), rates(2, 400.0), rates(3, 0.0)), link_goodput_mbps=941.49)
    assert a.jain == pytest.approx(1.0)
    assert a.active_uuids == {"u1", "u2"}
    assert a.aggregate_mbps == pytest.approx(800.0)
    assert a.efficiency == pytest.approx(800.0 / 941.49)
    assert a.findings == ()


def test_router_counts_once() -> None:
    """A forwarding domU receives and sends the same traffic: it counts max(rx, tx)."""
    a = assess(obs(rates(1, 300.0, 299.0)), link_goodput_mbps=1000.0, nics=2)
    assert a.aggregate_mbps == pytest.approx(300.0)
    assert a.efficiency == pytest.approx(0.15)


def test_unfair_and_collapse_findings() -> None:
    """Skewed sharing with idle CPU gives both findings, with their evidence."""
    a = assess(obs(rates(1, 500.0), rates(2, 10.0), idle=30.0), link_goodput_mbps=941.49)
    kinds = {f.kind for f in a.findings}
    assert kinds == {"unfair", "collapse"}
    unfair = next(f for f in a.findings if f.kind == "unfair")
    assert unfair.evidence["active_domus"] == 2
