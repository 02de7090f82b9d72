"""The evaluation suite's harness: strategies, oracle, metrics, CLI."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

import simulator.suite
from simulator.host import SimulatedHost
from simulator.scenario import parse_scenario, report_scenario
from simulator.suite import (
    Sample,
    SuiteResult,
    converge_intervals,
    formula_weight,
    oracle,
    register_controller,
    run_strategy,
    run_suite,
    spread,
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
    assert (tmp_path / "receive-8-seed0.png").stat().st_size > 1000


def _result(
    seed: int, aggregate: float, jain: float, converge: int, changes: int, **names: str
) -> SuiteResult:
    return SuiteResult(
        scenario=names.get("scenario", "s"), strategy=names.get("strategy", "adaptive"),
        aggregate_mbps=aggregate, jain=jain, efficiency=aggregate / 941.5,
        converge_intervals=converge, changes=changes, setting="closed loop", timeline=(),
        seed=seed,
    )  # fmt: skip


def test_spread_summarises_each_scenario_and_strategy_across_seeds() -> None:
    runs = [
        _result(0, 500.0, 0.9, 12, 4), _result(0, 100.0, 0.1, 0, 0, strategy="default"),
        _result(1, 600.0, 1.0, 6, 6), _result(1, 300.0, 0.3, 2, 0, strategy="default"),
        _result(2, 700.0, 0.95, 3, 5), _result(0, 900.0, 1.0, 1, 1, scenario="t"),
    ]  # fmt: skip
    adaptive, default, other = spread(runs)
    assert (adaptive.scenario, adaptive.strategy, adaptive.seeds) == ("s", "adaptive", (0, 1, 2))
    assert adaptive.aggregate_mbps == (500.0, 600.0, 700.0)
    assert adaptive.jain == pytest.approx((0.9, 0.95, 1.0))
    assert adaptive.converge_intervals == (3, 6, 12)  # a median: one unlucky seed does not move it
    assert adaptive.changes == (4, 5, 6)
    assert adaptive.to_json()["converge_intervals"] == {"min": 3, "median": 6, "max": 12}
    assert (default.strategy, default.seeds, default.aggregate_mbps) == (
        "default",
        (0, 1),
        (100.0, 200.0, 300.0),
    )
    assert default.converge_intervals == (0, 1, 2)
    assert (other.scenario, other.seeds, other.jain) == ("t", (0,), (1.0, 1.0, 1.0))


def test_each_seed_is_its_own_run() -> None:
    scenario = report_scenario("receive", n_domus=2, duration_s=4, warmup_s=0)
    runs = run_suite([scenario], ["default"], seeds=[0, 1, 1])
    assert [r.seed for r in runs] == [0, 1]
    assert runs[0].timeline != runs[1].timeline  # the seed reaches the host
    assert run_suite([scenario], ["default"], seeds=[1])[0].timeline == runs[1].timeline


@pytest.mark.parametrize(
    ("strategies", "message"),
    [(["default", "magic"], "unknown strategy 'magic'"), ([], "name at least one")],
)
def test_strategies_are_checked_before_anything_runs(
    strategies: list[str], message: str, mocker: MockerFixture
) -> None:
    ran = mocker.spy(simulator.suite, "run_strategy")
    with pytest.raises(ValueError, match=message):
        run_suite(suite_scenarios(quick=True), strategies)
    assert ran.call_count == 0


def _table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def test_suite_cli_runs_named_scenarios_over_seeds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["simulate", "suite", "--scenarios", "receive-2", "--seeds", "0-1", "--duration", "4",
         "--strategies", "default,default", "--json", "--plot", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["scenario"], r["strategy"], r["seed"]) for r in data["results"]] == [
        ("receive-2", "default", 0),
        ("receive-2", "default", 1),
    ]
    (sp,) = data["spread"]
    assert sp["seeds"] == [0, 1]
    mbps = [r["aggregate_mbps"] for r in data["results"]]
    assert (sp["aggregate_mbps"]["min"], sp["aggregate_mbps"]["max"]) == (min(mbps), max(mbps))
    assert sp["aggregate_mbps"]["mean"] == pytest.approx(sum(mbps) / 2, abs=0.06)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "receive-2-seed0.png",
        "receive-2-seed1.png",
    ]


def test_suite_cli_table_has_a_row_per_seed_and_a_spread(
    capsys: pytest.CaptureFixture[str], mocker: MockerFixture
) -> None:
    ran = mocker.spy(simulator.suite, "run_strategy")
    code = main(["simulate", "suite", "--scenarios", "receive-2,send-1", "--seeds", "3,1",
                 "--duration", "2", "--strategies", "default"])  # fmt: skip
    assert code == 0
    # --duration reaches the named scenarios: one sample per 2 s interval.
    assert [len(result.timeline) for result in ran.spy_return_list] == [1, 1, 1, 1]
    runs, spread_table = capsys.readouterr().out.split("\n\n")
    assert [row[:3] for row in _table_rows(runs)] == [
        ["receive-2", "default", "1"], ["receive-2", "default", "3"],
        ["send-1", "default", "1"], ["send-1", "default", "3"],
    ]  # fmt: skip
    assert spread_table.startswith("spread over seeds 1,3:")
    assert [row[:2] for row in _table_rows(spread_table)[1:]] == [
        ["receive-2", "default"],
        ["send-1", "default"],
    ]


def test_suite_cli_without_seeds_runs_seed_0_and_shows_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["simulate", "suite", "--scenarios", "send-1", "--duration", "2",
                 "--strategies", "default"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "spread" not in out
    assert [row[:3] for row in _table_rows(out)] == [["send-1", "default", "0"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenarios", "receive-2,nope"], "--scenarios: unknown scenario 'nope'; known: send-1,"),
        (["--scenarios", ","], "--scenarios: name at least one; known: send-1,"),
        (["--scenarios", "receive-2", "--quick"], "--quick, --scenarios: give one of them"),
        (["--seeds", "0-2", "--seed", "1"], "--seed, --seeds: give one of them"),
        (["--strategies", ","], "--strategies: name at least one; known: default, formula,"),
    ],
)
def test_suite_cli_refuses_bad_selections(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], mocker: MockerFixture
) -> None:
    ran = mocker.spy(simulator.suite, "run_strategy")
    assert main(["simulate", "suite", *argv]) == 78
    assert message in capsys.readouterr().err
    assert ran.call_count == 0


def test_suite_cli_refuses_a_bad_seed_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "suite", "--seeds", "0-1000"])
    assert exc.value.code == 2
    assert "--seeds: must be seeds from 0 to 2**63-1" in capsys.readouterr().err


def test_jobs_give_the_figures_of_one_process(mocker: MockerFixture) -> None:
    """Each simulation is seeded and shares nothing: spreading them (the oracle's sweep
    too) over processes changes wall times only, and the order of the results not at all."""
    scenarios = [report_scenario("forward", n_domus=2, duration_s=2, warmup_s=0)]
    strategies = ["default", "oracle", "adaptive"]
    told: dict[int, list[tuple[int, int]]] = {1: [], 4: []}
    alone = run_suite(scenarios, strategies, seeds=[0, 1], progress=lambda *p: told[1].append(p))
    mocker.patch("os.sched_getaffinity", return_value={0, 1})  # as on a 2-CPU machine
    pools = mocker.spy(multiprocessing.get_context("fork"), "Pool")
    spread_out = run_suite(
        scenarios, strategies, seeds=[0, 1], jobs=4, progress=lambda *p: told[4].append(p)
    )
    assert pools.call_args_list == [mocker.call(2)]  # no more processes than CPUs
    # default and adaptive once, the oracle's 18 static settings, per seed: 40 simulations
    assert told[1] == told[4] == [(k, 40) for k in range(1, 41)]

    def figures(results: list[SuiteResult]) -> list[SuiteResult]:
        return [dataclasses.replace(r, wall_seconds=0.0) for r in results]

    assert figures(spread_out) == figures(alone)
    assert [(r.strategy, r.seed) for r in spread_out] == [
        ("default", 0), ("default", 1), ("oracle", 0), ("oracle", 1), ("adaptive", 0),
        ("adaptive", 1),
    ]  # fmt: skip


def test_the_oracle_keeps_the_first_of_near_equals() -> None:
    """Sweep order is unpinned then pinned, weights rising: of settings within 0.01 % of
    each other the first (the lighter touch) wins; the sweep's wall times add up."""
    sweep = [
        dataclasses.replace(_result(0, a, 1.0, 0, 0), setting=f"#{i}", wall_seconds=1.0)
        for i, a in enumerate([100.0, 100.005, 99.0, 100.02])
    ]
    best = simulator.suite._best(sweep)
    assert (best.setting, best.wall_seconds) == ("#3", 4.0)
    assert simulator.suite._best(sweep[:3]).setting == "#0"


def test_suite_cli_refuses_bad_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "suite", "--jobs", "0"])
    assert exc.value.code == 2
    assert "--jobs: must be in [1, 256] (got 0)" in capsys.readouterr().err
    assert main(["simulate", "--workload", "send", "--domus", "1", "--jobs", "2"]) == 78
    assert "--jobs: not used here" in capsys.readouterr().err


def test_suite_cli_counts_simulations_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str], mocker: MockerFixture
) -> None:
    argv = ["simulate", "suite", "--scenarios", "send-1", "--duration", "2",
            "--strategies", "default,formula"]  # fmt: skip
    assert main(argv) == 0
    assert "simulations done" not in capsys.readouterr().err  # a log or a pipe: no count
    mocker.patch.object(sys.stderr, "isatty", return_value=True)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err == (
        "\rxvrd simulate suite: 1 of 2 simulations done"
        "\rxvrd simulate suite: 2 of 2 simulations done\n"
    )
