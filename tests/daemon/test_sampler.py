"""Counters to rates, from hand-built readings."""

from __future__ import annotations

import pytest

from xvrd.backends.base import Domain, DomainCounters, Pinning, SchedParams, VifCounters
from xvrd.sampler import Reading, Sampler

S = 1_000_000_000


def reading(domid: int, cpu_ns: int, rx: int = 0, tx: int = 0, uuid: str | None = None) -> Reading:
    uuid = uuid or f"uuid-{domid}"
    vif = VifCounters(f"vif{domid}.0", rx, rx // 1000, 0, tx, tx // 1000, 0)
    return Reading(
        Domain(domid, f"d{domid}", uuid, domid, 1),
        DomainCounters(uuid, cpu_ns, (vif,) if domid else ()),
        SchedParams(256),
        Pinning((frozenset({0, 1}),)),
    )


def test_first_reading_gives_no_rates() -> None:
    """Rates need two readings: the first observation is incomplete, with no numbers."""
    obs = Sampler().observe(S, [reading(0, 10), reading(1, 10, rx=5000)], cpus=2)
    assert not obs.complete
    assert obs.interval_s is None
    assert all(d.rx_mbps is None and d.cpu_pct is None for d in obs.domains)
    assert obs.idle_pct is None


def test_rates_from_deltas() -> None:
    """Bytes over an interval become Mb/s; CPU ns become % of the whole host."""
    s = Sampler()
    s.observe(S, [reading(0, 0), reading(1, 0, rx=0, tx=0)], cpus=2)
    obs = s.observe(3 * S, [reading(0, S), reading(1, S // 2, rx=250_000_000, tx=1_000_000)], 2)
    assert obs.complete
    assert obs.interval_s == 2.0
    dom1 = obs.domains[1]
    assert dom1.rx_mbps == pytest.approx(1000.0)
    assert dom1.tx_mbps == pytest.approx(4.0)
    assert dom1.cpu_pct == pytest.approx(12.5)
    assert obs.dom0_cpu_pct == pytest.approx(25.0)
    assert obs.idle_pct == pytest.approx(62.5)


def test_counter_reset_gives_no_rate_for_that_domain() -> None:
    """A rebooted domain (counters went backwards) has no rate, and the tick is incomplete."""
    s = Sampler()
    s.observe(S, [reading(0, S), reading(1, 10 * S, rx=10**9)], cpus=2)
    obs = s.observe(2 * S, [reading(0, 2 * S), reading(1, 100, rx=10)], cpus=2)
    assert obs.domains[1].rx_mbps is None
    assert obs.domains[0].cpu_pct is not None
    assert not obs.complete
    after = s.observe(3 * S, [reading(0, 3 * S), reading(1, 100 + S // 10, rx=10 + 125_000)], 2)
    assert after.complete
    assert after.domains[1].rx_mbps == pytest.approx(1.0)


def test_new_domid_for_same_uuid_is_a_new_domain() -> None:
    """Same UUID under a new domid (restarted) never gets a rate across the restart."""
    s = Sampler()
    s.observe(S, [reading(0, 0), reading(1, 0, uuid="u")], cpus=1)
    obs = s.observe(2 * S, [reading(0, S), reading(7, S, uuid="u")], cpus=1)
    assert obs.domains[1].cpu_pct is None


def test_appearing_and_vanishing_domains() -> None:
    """A new domain waits a tick for rates; a vanished one is simply absent."""
    s = Sampler()
    s.observe(S, [reading(0, 0), reading(1, 0)], cpus=2)
    obs = s.observe(2 * S, [reading(0, S), reading(2, 0)], cpus=2)
    assert [d.domain.domid for d in obs.domains] == [0, 2]
    assert not obs.complete
    obs = s.observe(3 * S, [reading(0, 2 * S), reading(2, S)], cpus=2)
    assert obs.complete
    assert obs.domains[1].cpu_pct == pytest.approx(50.0)


def test_clock_not_moving_gives_no_rates() -> None:
    """Two readings at the same instant cannot make a rate (no division by zero)."""
    s = Sampler()
    s.observe(S, [reading(0, 0)], cpus=1)
    obs = s.observe(S, [reading(0, 0)], cpus=1)
    assert not obs.complete
