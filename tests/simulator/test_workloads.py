"""Workloads other than the report's greedy flows, and changes over time."""

from __future__ import annotations

import pytest

from simulator.host import SimulatedHost
from simulator.report import run
from simulator.scenario import parse_scenario, report_scenario
from simulator.workloads import goodput_mbps


def test_ping_gets_answers_with_sub_millisecond_rtt_on_an_idle_host() -> None:
    scenario = parse_scenario({"domains": [{"name": "p", "workload": "ping", "interval_ms": 10}]})
    host = SimulatedHost(scenario)
    host.advance(1.0)
    rtts = host.ping_rtts_ns(1)
    assert 95 <= len(rtts) <= 101
    assert max(rtts) < 1_000_000


def test_burner_uses_its_duty_cycle_of_one_cpu() -> None:
    scenario = parse_scenario(
        {
            "duration_s": 5,
            "warmup_s": 1,
            "domains": [{"name": "b", "workload": "burn", "duty": 0.3}],
        }
    )
    burner = run(scenario).domains[0]
    assert 14 <= burner.cpu_pct <= 16  # 30 % of one of two pCPUs


def test_application_limited_sender_gets_its_rate() -> None:
    scenario = parse_scenario(
        {
            "duration_s": 5,
            "warmup_s": 1,
            "domains": [
                {"name": "r", "workload": "tcp_rate", "direction": "send", "rate_mbps": 200}
            ],
        }
    )
    result = run(scenario)
    assert 190 <= result.aggregate_mbps <= 205


def test_phases_change_weight_and_workload_mid_run() -> None:
    scenario = parse_scenario(
        {
            "domains": [{"name": "a", "workload": "idle"}],
            "phases": [
                {"at_s": 1, "action": "weight", "domain": "a", "weight": 777},
                {"at_s": 1, "action": "workload", "domain": "a", "workload": "receive"},
            ],
        }
    )
    host = SimulatedHost(scenario)
    host.advance(0.9)
    assert host.domain(1).weight == 256
    assert host.domain(1).vifs[0].rx_packets == 0
    host.advance(1.1)
    assert host.domain(1).weight == 777
    assert host.domain(1).workload == "receive"
    assert host.domain(1).vifs[0].rx_packets > 10_000


def test_domain_restarted_by_a_phase_gets_a_new_domid() -> None:
    """Like Xen: a domain started again is a new domain, its counters start from zero."""
    scenario = parse_scenario(
        {
            "domains": [{"name": "a", "workload": "receive", "stop_s": 1}],
            "phases": [{"at_s": 1.5, "action": "start", "domain": "a"}],
        }
    )
    host = SimulatedHost(scenario)
    host.advance(0.9)
    first = host.domains()[1]
    host.advance(1.0)
    second = host.domains()[1]
    assert second.name == "a"
    assert second.domid != first.domid
    assert second.vifs[0].rx_bytes < first.vifs[0].rx_bytes


@pytest.mark.parametrize("workload", ["receive", "forward"])
def test_a_flow_that_loses_its_whole_window_recovers_by_timeout(workload: str) -> None:
    """50 ms in which the NIC drops everything (no ACK can come back to clock out a resend):
    the retransmission timer restarts the flow instead of leaving it stalled for good."""
    host = SimulatedHost(report_scenario(workload, n_domus=1))
    host.advance(1.0)
    ring = host.netback.nics[0].rx  # where the data comes in
    slots, ring.cap = ring.cap, 0
    host.advance(0.05)
    ring.cap = slots
    before = host.delivered_segments(1)
    host.advance(1.0)
    mbps = goodput_mbps(host.delivered_segments(1) - before, 1.0)
    assert mbps > 300  # a 200 ms timeout, then slow start back up


def test_a_running_burner_switched_to_idle_stops_at_once() -> None:
    """The phase lands mid-unit on a busy vCPU: the burner's unfinished work is dropped and
    the idle guest blocks, rather than the old unit's end finding nothing to finish."""
    scenario = parse_scenario(
        {
            "host": {"pcpus": 2},
            "domains": [{"name": "burn", "count": 3, "workload": "burn", "duty": 1.0}],
            "phases": [
                {"at_s": 1.0005, "action": "workload", "domain": f"burn{i}", "workload": "idle"}
                for i in (1, 2, 3)
            ],
        }
    )
    host = SimulatedHost(scenario)
    host.advance(1.0005)
    before = [d.cpu_ns for d in host.domains()[1:]]
    host.advance(1.0)
    after = [d.cpu_ns for d in host.domains()[1:]]
    assert all(a - b < 1_000_000 for a, b in zip(after, before, strict=True))


def _one_pcpu(*domains: dict[str, object]) -> list[float]:
    """CPU % of the host each domain gets on a one-pCPU host over 3 simulated seconds."""
    scenario = parse_scenario(
        {"duration_s": 3, "warmup_s": 1, "host": {"pcpus": 1}, "domains": list(domains)}
    )
    return [d.cpu_pct for d in run(scenario).domains]


def test_a_burner_at_full_duty_keeps_its_cpu() -> None:
    """A new period's work arriving while the last one's is still running adds to it."""
    assert _one_pcpu({"name": "b", "workload": "burn", "duty": 1.0})[0] > 97
    a, b = _one_pcpu({"name": "b", "count": 2, "workload": "burn", "duty": 1.0})
    assert a + b > 97
    assert abs(a - b) < 3


def test_burners_below_full_duty_share_a_cpu_by_weight() -> None:
    """Each wants 90 % of the one pCPU: the credit scheduler gives them 1:3 by weight. A
    burner whose bursts fell between its pCPU's 10 ms ticks would never be charged."""
    light, heavy = _one_pcpu(
        {"name": "light", "workload": "burn", "duty": 0.9},
        {"name": "heavy", "workload": "burn", "duty": 0.9, "weight": 768},
    )
    assert light + heavy > 95
    assert 2.4 < heavy / light < 3.6


def test_a_cap_limits_a_burner_below_full_duty() -> None:
    (capped,) = _one_pcpu({"name": "b", "workload": "burn", "duty": 0.5, "cap": 20})
    assert capped < 25


def test_a_rate_limited_receiver_gets_its_rate() -> None:
    """The remote sender keeps sending at its rate between ACKs, not only when one comes."""
    scenario = parse_scenario(
        {
            "duration_s": 3,
            "warmup_s": 1,
            "domains": [{"name": "r", "workload": "tcp_rate", "rate_mbps": 500}],
        }
    )
    assert 490 <= run(scenario).aggregate_mbps <= 505
