"""The run report over a measured window that domains enter, leave or change inside."""

from __future__ import annotations

from simulator.report import run
from simulator.scenario import parse_scenario


def _run(domains: list[dict[str, object]], phases: list[dict[str, object]] | None = None) -> dict:
    scenario = parse_scenario(
        {
            "duration_s": 4,
            "warmup_s": 1,
            "host": {"pcpus": 4},
            "domains": domains,
            "phases": phases or [],
        }
    )
    return run(scenario).to_json()


def test_a_workload_changed_inside_the_window_keeps_what_its_first_flow_delivered() -> None:
    """Both receivers fill the link until 4.5 s of a 1-5 s window, then one sends."""
    result = _run(
        [{"name": "a", "workload": "receive"}, {"name": "b", "workload": "receive"}],
        [{"at_s": 4.5, "action": "workload", "domain": "a", "workload": "send"}],
    )
    a = result["domains"][0]
    assert a["workload"] == "receive->send"
    assert a["throughput_mbps"] > 300
    assert result["aggregate_mbps"] > 850


def test_a_domain_stopped_inside_the_window_is_reported_for_the_time_it_ran() -> None:
    result = _run(
        [
            {"name": "stay", "workload": "send"},
            {"name": "leave", "workload": "send", "stop_s": 3},
            {"name": "burn", "workload": "burn", "duty": 0.5, "stop_s": 3},
        ]
    )
    names = {d["name"]: d for d in result["domains"]}
    assert set(names) == {"stay", "leave", "burn"}
    assert names["leave"]["ran_s"] == 2.0
    assert names["stay"]["ran_s"] == 4.0
    assert names["leave"]["throughput_mbps"] > 100
    assert names["burn"]["cpu_pct"] > 5  # half a CPU for half the window, of four
    assert result["aggregate_mbps"] > 850  # the link stayed full
    total = sum(d["cpu_pct"] for d in result["domains"]) + result["dom0"]["cpu_pct"]
    assert 98 < total + result["idle_pct"] <= 100.5


def test_efficiency_counts_each_direction_of_the_link_once() -> None:
    """Send and receive together use both directions of one full-duplex link."""
    result = _run([{"name": "tx", "workload": "send"}, {"name": "rx", "workload": "receive"}])
    assert result["aggregate_mbps"] > 941.5
    assert 1882 < result["capacity_mbps"] < 1884
    assert result["efficiency"] <= 1.0


def test_without_network_domains_there_is_no_fairness_or_efficiency() -> None:
    result = _run([{"name": "b", "workload": "burn", "duty": 0.5}])
    assert result["jain"] is None
    assert result["efficiency"] is None
    assert result["aggregate_mbps"] == 0


def test_efficiency_counts_only_the_directions_used_inside_the_window() -> None:
    """Sending during the warm-up, receiving through the window: one direction."""
    result = _run(
        [{"name": "a", "workload": "send"}],
        [{"at_s": 0.5, "action": "workload", "domain": "a", "workload": "receive"}],
    )
    assert result["efficiency"] > 0.99
    assert result["domains"][0]["workload"] == "receive"


def test_jain_compares_rates_while_the_domains_ran() -> None:
    """A receiver joining halfway shares the link fairly with the one already there."""
    result = _run(
        [{"name": "a", "workload": "receive"}, {"name": "b", "workload": "receive", "start_s": 3}]
    )
    assert result["domains"][1]["ran_s"] == 2.0
    assert result["jain"] > 0.95


def test_each_workload_inside_the_window_is_named() -> None:
    result = _run(
        [{"name": "a", "workload": "receive"}],
        [
            {"at_s": 2, "action": "workload", "domain": "a", "workload": "burn"},
            {"at_s": 3, "action": "workload", "domain": "a", "workload": "receive"},
        ],
    )
    assert result["domains"][0]["workload"] == "receive->burn->receive"
