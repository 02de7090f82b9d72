"""Findings from observations: unfairness and collapse need dom0 to be short of CPU."""

from __future__ import annotations

from xvrd.analysis import assess
from xvrd.backends.base import Pinning
from xvrd.policy.detect import detect, dom0_load
from xvrd.sampler import DomainRates, Observation

from .conftest import TWO_CPUS

P = Pinning((frozenset({0, 1}),))


def dom(domid: int, mbps: float, cpu: float, weight: int = 256, tx: float = 0.0) -> DomainRates:
    return DomainRates(f"u{domid}", domid, f"dom{domid}", domid, 1, weight, 0, P,
                       mbps, tx, mbps * 80, tx * 80, 0.0, 0.0, cpu)  # fmt: skip


def observe(
    dom0_cpu: float, domus: list[tuple[float, float]], dom0_weight: int = 256
) -> Observation:
    rows = [dom(0, 0.0, dom0_cpu, dom0_weight)]
    rows += [dom(i, mbps, cpu) for i, (mbps, cpu) in enumerate(domus, start=1)]
    return Observation(0, 2.0, TWO_CPUS, tuple(rows))


def findings(obs: Observation) -> dict[str, dict[str, object]]:
    a = assess(obs, link_frame_mbps=984.0, active_threshold_mbps=0.5)
    return {f.kind: f.evidence for f in detect(obs, a)}


def test_creation_order_starvation_with_a_busy_dom0_is_unfair() -> None:
    """The report's receive N=8 row: dom0 near one full CPU, the last domUs starved."""
    rates = [296, 274, 169, 65, 30, 14, 19, 4.9]
    obs = observe(49.2, [(r, 1 + r / 80) for r in rates])
    found = findings(obs)
    assert "unfairness" in found
    evidence = found["unfairness"]
    assert evidence["starved"] == "dom8,dom6,dom7,dom5"
    assert evidence["dom0_cpu_pct"] == 49.2
    assert evidence["jain"] < 0.6


def test_an_application_limited_domu_with_dom0_at_ease_is_not_a_finding() -> None:
    """One domU wants 100 Mb/s, three take the rest; dom0 has time to spare."""
    obs = observe(34.0, [(280, 3), (280, 3), (280, 3), (100, 1)])
    assert findings(obs) == {}


def test_forwarding_collapse_with_idle_cpu_and_dom0_out_of_credit() -> None:
    """The report's forward N=8 row: 377 Mb/s, dom0 at 47 %, 39 % idle."""
    obs = observe(47.2, [(47, 1.6)] * 8)
    found = findings(obs)
    assert "collapse" in found
    assert found["collapse"]["idle_pct"] > 30
    assert "unfairness" not in found


def test_low_throughput_without_idle_cpu_is_dom0_starved() -> None:
    obs = observe(19.0, [(330, 12)] + [(0, 22.5)] * 3)
    assert "dom0-starved" in findings(obs)


def test_a_healthy_host_has_no_findings() -> None:
    assert findings(observe(35.0, [(117, 2)] * 8)) == {}


def test_dom0_share_follows_weights_of_cpu_active_domains() -> None:
    load = dom0_load(observe(40.0, [(100, 5)] * 3 + [(0, 0.0)], dom0_weight=768))
    assert load is not None
    assert load.due_pct == 50.0  # 768 / (768 + 3 x 256), capped by one vCPU of two
    assert load.capacity_pct == 50.0


def test_no_dom0_no_findings() -> None:
    obs = Observation(0, 2.0, TWO_CPUS, (dom(1, 100, 5), dom(2, 1, 0.1)))
    assert detect(obs, assess(obs, 984.0, 0.5)) == ()


def test_a_network_domu_behind_cpu_burners_is_crowded_out() -> None:
    """The suite's network-among-burners at default weights: the receiver gets 13 % of the
    host where its weight earns 20 %, the burners take 22 % each."""
    obs = observe(19.1, [(361, 13.4)] + [(0, 22.0)] * 3)
    found = findings(obs)
    assert found["crowded-out"]["short"] == "dom1"
    assert found["crowded-out"]["short_due_pct"] == 20.0
    assert found["crowded-out"]["cpu_bound_domus"] == 3


def test_domus_that_all_move_traffic_crowd_nobody_out() -> None:
    obs = observe(19.1, [(361, 13.4)] + [(5, 22.0)] * 3)
    assert "crowded-out" not in findings(obs)


def test_with_idle_cpu_nobody_is_crowded_out() -> None:
    obs = observe(19.1, [(361, 13.4)] + [(0, 15.0)] * 3)
    assert "crowded-out" not in findings(obs)


def test_a_raised_domu_is_judged_by_the_weight_it_had() -> None:
    """At 512 the receiver earns 24 % and uses 18 %: short of its raised weight's share but
    above what its own 256 earned, so the raise is not raised again."""
    rows = (dom(0, 0.0, 30.0, 838), dom(1, 550, 18.0, 512), *(dom(i, 0, 16.0) for i in (2, 3, 4)))
    obs = Observation(0, 2.0, TWO_CPUS, rows)
    a = assess(obs, link_frame_mbps=984.0, active_threshold_mbps=0.5)
    assert "crowded-out" in {f.kind for f in detect(obs, a)}
    assert "crowded-out" not in {f.kind for f in detect(obs, a, {"u1": 256})}
