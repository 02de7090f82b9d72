"""The adaptive policy closing the loop on the simulated host (batch mode, daemon's tick)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from simulator.closed_loop import daemon_controller
from simulator.host import SimulatedHost
from simulator.scenario import Scenario, parse_scenario, report_scenario
from simulator.suite import run_strategy, suite_scenarios
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import Settings
from xvrd.daemon import Daemon
from xvrd.policy.adaptive import AdaptivePolicy


def best_static(scenario_name: str, n: int, duration: float) -> tuple[float, float]:
    """The best of a few static settings around the oracle's picks (aggregate, Jain)."""
    scenario = report_scenario(scenario_name, n_domus=n, duration_s=duration, warmup_s=0)
    runs = [
        run_strategy(scenario, "static", dom0_weight=w, pinned=p)
        for w in (2048, 4096)
        for p in (False, True)
    ]
    best = max(runs, key=lambda r: r.aggregate_mbps * r.jain)
    return best.aggregate_mbps, best.jain


def test_receive_8_from_default_weights_converges_near_the_best_static_setting() -> None:
    scenario = report_scenario("receive", n_domus=8, duration_s=40, warmup_s=0)
    adaptive = run_strategy(scenario, "adaptive")
    aggregate, jain = best_static("receive", 8, 40)
    assert adaptive.converge_intervals <= 10
    assert adaptive.aggregate_mbps >= 0.98 * aggregate
    assert adaptive.jain >= 0.98 * jain


def test_receive_8_reaches_jain_0_99_by_pinning_dom0_after_its_raise() -> None:
    """The raise alone leaves Jain about 0.986: wake-ups of the domUs on dom0's pCPU still
    delay it. Pinned alone on pCPU 0, with the domUs fitting on pCPU 1, it is never delayed."""
    scenario = report_scenario("receive", n_domus=8, duration_s=40, warmup_s=0)
    result = run_strategy(scenario, "adaptive")
    assert result.jain >= 0.99
    first_pinned = next(s for s in result.timeline if s.dom0_pinned)
    assert first_pinned.dom0_weight > 256  # weights first
    assert first_pinned.t_s <= 20.0


@pytest.mark.parametrize("name", ["send-8", "app-limited"])
def test_healthy_and_application_limited_hosts_get_no_action(name: str) -> None:
    scenario = next(s for s in suite_scenarios(quick=True) if s.name == name)
    result = run_strategy(scenario.model_copy(update={"duration_s": 40.0}), "adaptive")
    assert result.changes == 0
    assert {s.dom0_weight for s in result.timeline} == {256}


def test_steady_state_changes_at_most_once_per_50_intervals() -> None:
    scenario = report_scenario("receive", n_domus=8, duration_s=240, warmup_s=0)
    result = run_strategy(scenario, "adaptive")
    settings = [(s.dom0_weight, s.dom0_pinned) for s in result.timeline]
    settled = settings[20:]  # after convergence: 100 intervals
    changes = sum(1 for a, b in itertools.pairwise(settled) if a != b)
    assert changes <= 2


def test_weight_follows_the_number_of_network_active_domus_up() -> None:
    scenario = next(s for s in suite_scenarios() if s.name == "join-leave")
    result = run_strategy(scenario.model_copy(update={"duration_s": 70.0}), "adaptive")
    before_join = [s.dom0_weight for s in result.timeline if s.t_s <= 30]
    after_join = [s.dom0_weight for s in result.timeline if 40 <= s.t_s <= 70]
    assert max(after_join) > max(before_join)


def test_advise_mode_reports_and_changes_nothing(tmp_path: Path) -> None:
    backend = SimulatorBackend.from_scenario(report_scenario("receive", n_domus=8), speed=None)
    settings = Settings(backend="simulator", scenario=Path("x"), state_dir=tmp_path, mode="advise")
    daemon = Daemon(settings, backend, AdaptivePolicy())
    daemon.tick()
    for _ in range(6):
        backend.host.advance(2.0)
        daemon.tick()
    assert backend.host.domain(0).weight == 256
    status = daemon.status()
    assert status["findings"]
    advised = [a for a in status["actions"] if not a["applied"]]
    assert advised
    assert "advise mode" in advised[-1]["reason"]


# ---------------------------------------------------------------- a network domU among burners
def burners(duration: float, burners_stop_s: float | None = None) -> Scenario:
    """One receiving domU among three CPU burners (the suite's network-among-burners)."""
    burn: dict[str, object] = {"name": "burn", "count": 3, "workload": "burn", "duty": 1.0}
    if burners_stop_s is not None:
        burn["stop_s"] = burners_stop_s
    return parse_scenario(
        {
            "name": "network-among-burners",
            "duration_s": duration,
            "domains": [{"name": "net", "workload": "receive"}, burn],
        }
    )


def closed_loop(scenario: Scenario, settings: Settings | None = None) -> Daemon:
    """The daemon's tick after each 2 s of the scenario; returns the daemon to inspect."""
    host = SimulatedHost(scenario)
    control = daemon_controller(host, 2.0)
    daemon: Daemon = control.daemon  # type: ignore[attr-defined]
    for _ in range(round(scenario.duration_s / 2.0)):
        host.advance(2.0)
        control(host)
    return daemon


def test_status_shows_each_change_judged_with_its_figures() -> None:
    """The raise at receive N = 8 and the pin after it, each kept, with what they did."""
    daemon = closed_loop(report_scenario("receive", n_domus=8, duration_s=30, warmup_s=0))
    verdicts = daemon.status()["verdicts"]
    changes = [v["change"] for v in verdicts]
    assert changes[0].startswith("Domain-0 weight 256 -> ")
    assert "Domain-0 pinned to pCPU 0" in changes
    assert all(v["kept"] for v in verdicts)
    raise_ = verdicts[0]
    assert raise_["jain_before"] < 0.9 < raise_["jain_after"]
    assert raise_["objective_after_mbps"] >= 1.03 * raise_["objective_before_mbps"]
    assert raise_["summary"].startswith(f"{raise_['change']}: kept, fair throughput ")


def weight_of(daemon: Daemon, name: str) -> int:
    assert daemon.observation is not None
    return next(d.weight for d in daemon.observation.domains if d.name == name)


def test_a_network_domu_crowded_out_by_cpu_burners_gets_its_weight_raised() -> None:
    """dom0's weight alone locks the network domU in behind the burners (about 210 Mb/s);
    raising its own weight with dom0's beats the best static dom0 setting (1024)."""
    scenario = burners(30.0)
    adaptive = run_strategy(scenario, "adaptive")
    best = run_strategy(scenario, "static", dom0_weight=1024)
    assert adaptive.aggregate_mbps >= 0.98 * best.aggregate_mbps
    assert adaptive.converge_intervals <= 10
    assert adaptive.changes == 1
    daemon = closed_loop(scenario)
    assert weight_of(daemon, "net") > 256
    assert {weight_of(daemon, f"burn{i}") for i in (1, 2, 3)} == {256}
    raised = [a for a in daemon.status()["actions"] if a["domain"] == "net"]
    assert raised
    assert raised[0]["reason"].startswith("crowded out: net moves")
    # dom0 in the same step: the raised weight cuts its share as the traffic grows
    with_it = [a for a in daemon.status()["actions"] if a["domain"] == "Domain-0"]
    assert with_it[0]["time"] == raised[0]["time"]
    assert with_it[0]["reason"].endswith("once the crowded-out domUs' weights are raised")


def test_a_raised_domu_weight_is_given_back_once_no_burner_competes() -> None:
    daemon = closed_loop(burners(70.0, burners_stop_s=20.0))
    assert weight_of(daemon, "net") == 256
    reasons = [a["reason"] for a in daemon.status()["actions"] if a["domain"] == "net"]
    assert reasons[0].startswith("crowded out")
    assert reasons[-1] == "give CPU back: no CPU-bound domU competes with it"


def test_a_network_domu_with_a_manual_weight_is_not_raised(tmp_path: Path) -> None:
    host = SimulatedHost(burners(20.0))
    settings = Settings(backend="simulator", scenario=Path("x"), state_dir=tmp_path)
    daemon = Daemon(settings, SimulatorBackend(host, speed=None), AdaptivePolicy())
    daemon.set_weight("net", 256)
    daemon.tick()
    for _ in range(10):
        host.advance(2.0)
        daemon.tick()
    assert host.domain(1).name == "net"
    assert host.domain(1).weight == 256
    assert all(a["domain"] != "net" or "manual" in a["reason"] for a in daemon.status()["actions"])


def test_dom0_gives_back_only_what_the_credit_arithmetic_says_it_can_spare() -> None:
    """Among the burners dom0 uses about 25 % of the host at 1047; half that weight would
    earn it 29 %, too close to what it uses: the next busy tick would find it short again
    (lowered at tick 23, raised at tick 30 before the margin). No give-back trial, one
    change in all."""
    result = run_strategy(burners(60.0), "adaptive")
    assert result.changes == 1
    assert len({s.dom0_weight for s in result.timeline[1:]}) == 1


# ---------------------------------------------------------------- domUs joining and leaving
def test_the_tick_domus_leave_is_not_taken_for_a_collapse() -> None:
    """Six of eight receivers stop at 20 s: their traffic of that interval is missing from
    the tick's figures, which look like a collapse. The policy waits for a whole tick and
    lowers dom0's weight for the two left instead of doubling it."""
    scenario = parse_scenario(
        {
            "name": "leave",
            "duration_s": 30,
            "domains": [
                {"name": "base", "count": 2, "workload": "receive"},
                {"name": "extra", "count": 6, "workload": "receive", "stop_s": 20},
            ],
        }
    )
    weights = [s.dom0_weight for s in run_strategy(scenario, "adaptive").timeline]
    before_leave = weights[9]  # the sample at 20 s
    assert before_leave > 256
    assert max(weights[10:]) <= before_leave
    assert weights[-1] < before_leave


def test_domus_joining_a_busy_dom0_get_its_weight_at_the_first_whole_tick() -> None:
    """Six receivers join two at 30 s; the first tick that sees their rates (32 s) raises
    dom0's weight from the estimate rather than waiting for the starvation to persist."""
    scenario = next(s for s in suite_scenarios() if s.name == "join-leave")
    result = run_strategy(scenario.model_copy(update={"duration_s": 40.0}), "adaptive")
    weight = {s.t_s: s.dom0_weight for s in result.timeline}
    assert weight[34.0] > 2 * weight[30.0]
