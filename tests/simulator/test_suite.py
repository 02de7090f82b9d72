"""The evaluation suite's harness: strategies, oracle, metrics, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.host import SimulatedHost
from simulator.scenario import parse_scenario, report_scenario
from simulator.suite import (
    Sample,
    converge_intervals,
    formula_weight,
    oracle,
    register_controller,
    run_strategy,
    run_suite,
    suite_scenarios,
)
from xvrd.cli import main


def test_formula_gives_dom0_the_weight_of_its_demand() -> None:
    assert formula_weight([256] * 8) == 2048
    assert formula_weight([256] * 2) == 512
    assert formula_weight([256] * 8, dom0_share=0.75) == 6144
    assert formula_weight([]) == 256  # never below Xen's default
    assert formula_weight([65535] * 4) == 65535


def test_suite_covers_the_issue_scenarios() -> None:
    names = {s.name for s in suite_scenarios()}
    for wl in ("send", "receive", "forward"):
        assert {f"{wl}-{n}" for n in (1, 2, 4, 8)} <= names
    assert {"receive-16-on-4cpu", "receive-32-on-8cpu", "forward-16-on-4cpu"} <= names
    assert {"half-receive-half-forward", "network-among-burners", "app-limited"} <= names
    assert "join-leave" in names


def test_static_weight_is_applied_and_measured_over_the_second_half() -> None:
    scenario = report_scenario("receive", n_domus=8, duration_s=12, warmup_s=0)
    sick = run_strategy(scenario, "default")
    cured = run_strategy(scenario, "formula", dom0_weight=4096)
    assert len(sick.timeline) == 6
    assert {s.dom0_weight for s in cured.timeline} == {4096}
    assert cured.jain > 0.95
    assert sick.jain < 0.7
    assert cured.changes == sick.changes == 0


def test_oracle_picks_the_best_static_setting() -> None:
    scenario = report_scenario("receive", n_domus=4, duration_s=6, warmup_s=0)
    best = oracle(scenario)
    default = run_strategy(scenario, "default")
    assert best.aggregate_mbps * best.jain >= default.aggregate_mbps * default.jain
    assert best.setting.startswith("dom0 weight")


def test_registered_controller_is_called_every_interval() -> None:
    calls: list[int] = []

    def factory(host: SimulatedHost, interval_s: float) -> object:
        def control(h: SimulatedHost) -> int:
            calls.append(h.now_ns)
            if len(calls) == 2:
                h.set_weight(0, 2048)
                return 1
            return 0

        return control

    register_controller("test-step", factory)  # type: ignore[arg-type]
    scenario = report_scenario("receive", n_domus=2, duration_s=8, warmup_s=0)
    (result,) = run_suite([scenario], ["test-step"])
    assert calls == [2_000_000_000, 4_000_000_000, 6_000_000_000, 8_000_000_000]
    assert result.changes == 1
    assert [s.dom0_weight for s in result.timeline] == [256, 256, 2048, 2048]


def sample(agg: float, jain: float, domus: int = 4) -> Sample:
    return Sample(0.0, agg, jain, 256, False, frozenset(range(domus)))


def test_convergence_counts_intervals_until_settled() -> None:
    samples = [sample(500, 0.5), sample(700, 0.8), sample(940, 0.99)] + [sample(941, 1.0)] * 5
    assert converge_intervals(samples) == 2
    assert converge_intervals([sample(941, 1.0)] * 8) == 0


def test_convergence_is_counted_from_each_disturbance_and_the_worst_reported() -> None:
    """A join at interval 15 is charged from the join, not from the start of the run."""
    before = [sample(300, 0.6, 2), sample(900, 1.0, 2)] + [sample(941, 1.0, 2)] * 13
    joined = [sample(600, 0.3, 8)] * 4 + [sample(941, 0.99, 8)] * 20
    left = [sample(941, 1.0, 2)] * 20
    assert converge_intervals(before + joined + left) == 4
    assert converge_intervals(before + left) == 1


def test_a_domu_replaced_by_another_is_a_disturbance_too() -> None:
    def on(domids: set[int], agg: float, jain: float) -> Sample:
        return Sample(0.0, agg, jain, 256, False, frozenset(domids))

    before = [on({1, 2}, 941, 1.0)] * 10
    swapped = [on({1, 3}, 500, 0.6)] * 3 + [on({1, 3}, 941, 1.0)] * 10
    assert converge_intervals(before + swapped) == 3


#: A host swinging about 10 % between intervals under a fixed setting.
NOISE = (1.0, 0.9, 1.05, 0.93, 1.08, 0.95, 1.02, 0.9, 1.06, 0.92)


def test_a_noisy_host_is_settled_within_its_own_noise() -> None:
    """Swings of 10 % are noise on this host, not a failure to settle: with a band of
    5 % alone this flat run would count 12 intervals."""
    noisy = [sample(500 * f, 1.0) for f in NOISE * 3]
    assert converge_intervals(noisy) == 0


def test_a_step_still_counts_on_a_noisy_host() -> None:
    """The band widens to the noise, at most to 15 %: a 40 % shortfall is not noise."""
    noisy = [sample(300, 1.0)] * 3 + [sample(500 * f, 1.0) for f in NOISE * 3]
    assert converge_intervals(noisy) == 3


#: A host wandering by 8 % over several intervals under a fixed setting.
WANDER = (1.0, 0.97, 0.93, 0.92, 0.94, 1.0, 1.05, 1.08, 1.06, 1.02)


def test_a_host_wandering_slowly_is_settled_within_its_own_noise() -> None:
    """Drift over several intervals is the host's too: with 5 % alone (or a noise estimate
    from differences between neighbouring samples, which drift passes) 15 intervals."""
    assert converge_intervals([sample(500 * f, 1.0) for f in WANDER * 3]) == 0


def test_swings_that_come_with_changes_of_setting_are_not_noise() -> None:
    """The same swings with dom0's weight changing every interval are the strategy's
    doing, not the host's: the band stays 5 %."""
    flapping = [
        Sample(0.0, 500 * f, 1.0, 256 << (i % 2), False, frozenset(range(4)))
        for i, f in enumerate(NOISE * 3)
    ]
    assert converge_intervals(flapping) == 12


def test_a_phase_that_never_settles_counts_half_its_length() -> None:
    swinging = [sample(941 if i % 2 else 400, 1.0) for i in range(20)]
    assert converge_intervals(swinging) == 9


def test_joins_are_measured_from_the_next_interval_and_leavers_to_their_end() -> None:
    """Domains join and leave on interval boundaries here. Counted naively, the interval
    ending at the join would show the joiners with no traffic and the one ending at the
    leave would lose what the leavers carried: neither is the host's sharing."""
    scenario = parse_scenario(
        {
            "name": "join",
            "duration_s": 8,
            "domains": [
                {"name": "base", "count": 2, "workload": "receive"},
                {"name": "extra", "count": 2, "workload": "receive", "start_s": 2, "stop_s": 6},
            ],
        }
    )
    (result,) = run_suite([scenario], ["default"])
    assert [s.domus for s in result.timeline] == [2, 4, 4, 2]
    assert all(s.aggregate_mbps > 800 for s in result.timeline)


def test_unknown_strategy_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "suite", "--quick", "--strategies", "magic"])
    assert code == 78
    assert "unknown strategy 'magic'" in capsys.readouterr().err


def test_suite_cli_prints_json_and_plots(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--plot needs matplotlib, which the dev extra installs: no skipping here."""
    code = main(
        ["simulate", "suite", "--quick", "--duration", "4", "--strategies", "default",
         "--json", "--plot", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["scenario"] for r in data["results"]} >= {"receive-8", "join-leave"}
    assert (tmp_path / "receive-8.png").stat().st_size > 1000
