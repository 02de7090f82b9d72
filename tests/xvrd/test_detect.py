"""Findings from observations: unfairness and collapse need dom0 to be short of CPU."""

from __future__ import annotations

from xvrd.analysis import assess
from xvrd.backends.base import Pinning
from xvrd.policy.detect import (
    STEADY_TICKS,
    RateHistory,
    detect,
    dom0_load,
    remember_rates,
    showing_starvation,
    starving_under_mean,
)
from xvrd.sampler import DomainRates, Observation

from .conftest import TWO_CPUS

P = Pinning((frozenset({0, 1}),))


def dom(
    domid: int, mbps: float, cpu: float, weight: int = 256, tx: float = 0.0, *, drops: float = 0.0
) -> DomainRates:
    return DomainRates(f"u{domid}", domid, f"dom{domid}", domid, 1, weight, 0, P,
                       mbps, tx, mbps * 80, tx * 80, drops, 0.0, cpu)  # fmt: skip


def observe(
    dom0_cpu: float, domus: list[tuple[float, float]], dom0_weight: int = 256
) -> Observation:
    rows = [dom(0, 0.0, dom0_cpu, dom0_weight)]
    rows += [dom(i, mbps, cpu) for i, (mbps, cpu) in enumerate(domus, start=1)]
    return Observation(0, 2.0, TWO_CPUS, tuple(rows))


def findings(
    obs: Observation, starving: frozenset[str] | None = None
) -> dict[str, dict[str, object]]:
    a = assess(obs, link_frame_mbps=984.0, active_threshold_mbps=0.5)
    return {f.kind: f.evidence for f in detect(obs, a, starving=starving)}


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


def history(*ticks: list[tuple[float, float]], dom0_cpu: float = 43.0) -> RateHistory:
    """The rate history after one observation per tick: (Mb/s, drops/s) per domU."""
    out: RateHistory = ()
    for tick in ticks:
        rows = [dom(0, 0.0, dom0_cpu)]
        rows += [dom(i, mbps, 2, drops=d) for i, (mbps, d) in enumerate(tick, start=1)]
        obs = Observation(0, 2.0, TWO_CPUS, tuple(rows))
        out = remember_rates(obs, assess(obs, 984.0, 0.5), out)
    return out


GREEDY = [(285.0, 0.0)] * 3


def test_an_application_limited_domu_shows_no_starvation() -> None:
    """One sender at 85 Mb/s among three greedy ones, dom0 busy carrying the full link
    (43 % of 50): the low rate alone is no evidence, and its steady rate without drops
    shows none."""
    obs = observe(43.0, [(285, 3), (285, 3), (285, 3), (85, 1)])
    assert findings(obs)["unfairness"]["starved"] == "dom4"  # judged by the rate alone
    steady = history(*[[*GREEDY, (85 + k * 0.2, 0)] for k in range(5)])
    assert "u4" not in showing_starvation(steady)
    assert findings(obs, showing_starvation(steady)) == {}


def test_a_starved_domu_shows_it_by_a_rate_that_moves_or_by_drops() -> None:
    obs = observe(43.0, [(285, 3), (285, 3), (285, 3), (85, 1)])
    moving = history([*GREEDY, (85, 0)], [*GREEDY, (80, 0)])
    dropping = history([*GREEDY, (85, 0)], [*GREEDY, (85, 0)], [*GREEDY, (85, 3.5)])
    dropping_at_once = history([*GREEDY, (85, 3.5)])
    for seen in (moving, dropping, dropping_at_once):
        assert showing_starvation(seen) == {"u4"}
        assert findings(obs, showing_starvation(seen))["unfairness"]["starved"] == "dom4"


def test_a_change_over_two_ticks_must_be_twice_what_it_must_be_over_three() -> None:
    """0.9 % is the bound over three ticks; a single change must be 1.8 %."""
    assert showing_starvation(history([(100, 0)], [(101.5, 0)])) == frozenset()  # 0.74 %
    assert showing_starvation(history([(100, 0)], [(104, 0)])) == {"u1"}  # 1.96 %
    assert showing_starvation(history([(100, 0)], [(102, 0)], [(100, 0)])) == {"u1"}  # 0.94 %
    assert showing_starvation(history([(100, 0)], [(101, 0)], [(100, 0)])) == frozenset()


def test_starvation_is_judged_over_the_last_ticks_a_domu_was_seen_in_a_row() -> None:
    assert showing_starvation(history([(85, 0)])) == frozenset()  # one tick: no evidence
    moved_long_ago = history([(60, 0)], *[[(85, 0)]] * STEADY_TICKS)
    assert showing_starvation(moved_long_ago) == frozenset()
    assert len(moved_long_ago) == STEADY_TICKS
    # Unread for a tick (missing): the run starts again, and one tick is no evidence.
    gap = history([(60, 0)], [], [(85, 0)])
    assert showing_starvation(gap) == frozenset()
    silent = history([(0, 0)], [(0, 0)], [(0, 0)])
    assert showing_starvation(silent) == frozenset()


def test_a_flow_starting_from_nothing_is_not_a_rate_that_moved() -> None:
    """A steady sender starting (or a domU created idle, then sending) is seen from its
    first tick with traffic: no zero before it counts."""
    starting = history([*GREEDY, (0, 0)], [*GREEDY, (0, 0)], [*GREEDY, (85, 0)])
    assert "u4" not in showing_starvation(starting)
    assert "u4" not in showing_starvation(history(*[[*GREEDY, (0, 0)]] * 2, [*GREEDY, (85, 0)],
                                                  [*GREEDY, (85.1, 0)]))  # fmt: skip


def test_starving_under_the_mean_names_only_a_domu_that_shows_it() -> None:
    obs = observe(43.0, [(285, 3), (285, 3), (285, 3), (85, 1)])
    a = assess(obs, link_frame_mbps=984.0, active_threshold_mbps=0.5)
    assert not starving_under_mean(obs, a, frozenset())
    assert not starving_under_mean(obs, a, frozenset({"u1"}))  # above the mean
    assert starving_under_mean(obs, a, frozenset({"u4"}))


def test_a_steady_domu_does_not_hide_a_starved_one_beside_it() -> None:
    """Nor is it hidden: the finding says how many more are low without evidence."""
    obs = observe(47.0, [(330, 3), (330, 3), (90, 1), (40, 0.5)])
    seen = history(*[[(330, 0), (330, 0), (90, 0), (40 + 9 * k, 0)] for k in range(3)])
    assert showing_starvation(seen) == {"u4"}
    a = assess(obs, link_frame_mbps=984.0, active_threshold_mbps=0.5)
    (unfair,) = [f for f in detect(obs, a, starving=showing_starvation(seen))
                 if f.kind == "unfairness"]  # fmt: skip
    assert unfair.evidence["starved"] == "dom4"
    assert unfair.evidence["low_without_evidence"] == 1
    assert unfair.summary.endswith("; 1 more under half the mean show no starvation (yet)")


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
