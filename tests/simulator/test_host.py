"""The simulated host as a whole: determinism, counters, lifecycle, settings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.host import DOM0_UUID, SimulatedHost
from simulator.scenario import parse_scenario, report_scenario


def _snapshot(host: SimulatedHost) -> list[tuple[object, ...]]:
    return [(d.name, d.cpu_ns, d.vifs) for d in host.domains()]


def test_same_seed_gives_identical_counters_and_another_seed_differs() -> None:
    runs = []
    for seed in (7, 7, 8):
        host = SimulatedHost(report_scenario("receive", n_domus=4), seed=seed)
        host.advance(2.0)
        runs.append(_snapshot(host))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_counters_are_cumulative_and_seen_from_the_guest() -> None:
    """A receiving domU's vif counts far more bytes received than sent (ACKs only)."""
    host = SimulatedHost(report_scenario("receive", n_domus=1))
    host.advance(1.0)
    before = host.domain(1)
    host.advance(1.0)
    after = host.domain(1)
    vif0, vif1 = before.vifs[0], after.vifs[0]
    assert vif0.name == "vif1.0"
    assert vif1.rx_bytes > vif0.rx_bytes
    assert vif1.rx_packets > vif0.rx_packets
    assert vif1.rx_bytes - vif0.rx_bytes > 20 * (vif1.tx_bytes - vif0.tx_bytes)
    assert after.cpu_ns > before.cpu_ns
    # About 940 Mb/s of 1514-byte frames in one second.
    assert 75_000 < vif1.rx_packets - vif0.rx_packets < 85_000


def test_dom0_is_listed_first_with_xen_identity() -> None:
    host = SimulatedHost(report_scenario("send", n_domus=2))
    doms = host.domains()
    assert [d.domid for d in doms] == [0, 1, 2]
    assert doms[0].name == "Domain-0"
    assert doms[0].uuid == DOM0_UUID
    assert [d.creation_seq for d in doms] == sorted(d.creation_seq for d in doms)


def test_domains_start_and_stop_on_schedule() -> None:
    scenario = parse_scenario(
        {
            "domains": [
                {"name": "a", "workload": "receive"},
                {"name": "b", "workload": "receive", "start_s": 1.0, "stop_s": 2.0},
            ]
        }
    )
    host = SimulatedHost(scenario)
    host.advance(0.5)
    assert [d.name for d in host.domains()] == ["Domain-0", "a"]
    host.advance(1.0)
    assert [d.name for d in host.domains()] == ["Domain-0", "a", "b"]
    b = next(d for d in host.domains() if d.name == "b")
    host.advance(1.0)
    assert [d.name for d in host.domains()] == ["Domain-0", "a"]
    with pytest.raises(KeyError):
        host.domain(b.domid)


def test_settings_are_applied_and_bad_values_change_nothing() -> None:
    host = SimulatedHost(report_scenario("receive", n_domus=2))
    host.set_weight(0, 4096)
    host.set_cap(1, 50)
    host.set_pinning(0, [frozenset({0})])
    dom0 = host.domain(0)
    assert dom0.weight == 4096
    assert dom0.pinning == (frozenset({0}),)
    assert host.domain(1).cap == 50
    with pytest.raises(ValueError, match="65535"):
        host.set_weight(1, 70000)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        host.set_pinning(1, [frozenset({5})])
    assert host.domain(1).weight == 256
    assert host.domain(1).pinning == (frozenset({0, 1}),)


def test_a_larger_dom0_weight_cures_receive_unfairness() -> None:
    """The pathology and its cure, end to end through the host's own counters."""
    from simulator.report import run

    sick = run(report_scenario("receive", n_domus=8, duration_s=6, warmup_s=2))
    cured = run(report_scenario("receive", n_domus=8, dom0_weight=4096, duration_s=6, warmup_s=2))
    assert sick.jain < 0.7
    assert cured.jain > 0.95
    assert cured.aggregate_mbps > sick.aggregate_mbps


def test_pinning_dom0_to_its_own_cpu_is_obeyed() -> None:
    scenario = parse_scenario(
        {
            "host": {"dom0_pinning": [0]},
            "domains": [{"name": "d", "count": 2, "workload": "receive", "pinning": [1]}],
        }
    )
    host = SimulatedHost(scenario)
    host.advance(2.0)
    sched = host.sched
    assert sched.domains[0].vcpus[0].affinity == frozenset({0})
    assert all(d.vcpus[0].processor == 1 for d in sched.domains[1:])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_pinning_at_any_instant_keeps_every_vcpu_in_one_runqueue(
    steps: list[tuple[float, bool]],
) -> None:
    """Operators and the policy pin dom0 whenever they like, whatever each vCPU is doing
    at that instant: running, waiting in a runqueue, or blocked."""
    host = SimulatedHost(report_scenario("receive", n_domus=4))
    everywhere = frozenset({0, 1})
    for dt, pinned in steps:
        host.advance(dt)
        for d in host.domains():
            own = frozenset({0}) if d.domid == 0 else frozenset({1})
            host.set_pinning(d.domid, [own if pinned else everywhere] * d.vcpus)
        for pc in host.sched.pcpus:
            for v in pc.runq:
                assert v.queued
                assert v.processor == pc.cpu
                assert pc.cpu in v.affinity
        queued = [v for pc in host.sched.pcpus for v in pc.runq]
        assert len(queued) == len({id(v) for v in queued})
