"""Evaluation suite: scenarios run under competing strategies, measured the same way.

Strategies:
* ``default``: every weight at Xen's default, as the report's baseline;
* ``formula``: a static dom0 weight from the credit scheduler's own arithmetic (below);
* ``oracle``: the best static setting found by sweeping dom0's weight over powers of two
  (256 to 65535) with and without dom0 pinned to its own pCPU;
* any controller registered with `register_controller` (the daemon's adaptive policy),
  started from default weights and called once per control interval.

Measurement uses the simulator's own delivery counters (what iperf would print), never
what a controller saw. Aggregate and Jain are averaged over the run's second half; time to
converge is counted from each disturbance (the start, a domain joining or leaving) and the
worst is reported.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from simulator.host import SimulatedHost
from simulator.report import Controller, ControllerFactory, link_goodput_mbps
from simulator.scenario import NETWORK_WORKLOADS, Scenario, parse_scenario, report_scenario
from simulator.workloads import goodput_mbps
from xvrd.analysis import jain_index

#: dom0 weights the oracle tries: powers of two from Xen's default up to the maximum.
ORACLE_WEIGHTS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65535)
#: Control interval of the suite's runs (the daemon's default).
INTERVAL_S = 2.0


def formula_weight(domu_weights: list[int], dom0_share: float = 0.5) -> int:
    """dom0's weight so that it stays UNDER while it needs ``dom0_share`` of the machine.

    Credits are handed out by weight, so dom0 earns ``w0 / (w0 + W)`` of the machine, W being
    the weights of the other active domains; for that to cover its demand d,
    ``w0 >= W * d / (1 - d)``. With d = 0.5 (dom0 using one of two pCPUs, as measured) this
    is the sum of the domUs' weights: 2048 for 8 domUs at 256, where the reference sweep
    restored fairness.
    """
    total = sum(domu_weights)
    weight = round(total * dom0_share / (1.0 - dom0_share))
    return max(256, min(65535, weight))  # never below Xen's default


@dataclass(frozen=True)
class Sample:
    """One control interval as measured by the suite."""

    t_s: float
    aggregate_mbps: float
    jain: float
    dom0_weight: int
    dom0_pinned: bool
    #: Network domUs measured in this interval (domids): those running at its start.
    measured: frozenset[int] = frozenset()

    @property
    def domus(self) -> int:
        return len(self.measured)


@dataclass(frozen=True)
class SuiteResult:
    scenario: str
    strategy: str
    aggregate_mbps: float
    jain: float
    efficiency: float
    converge_intervals: int
    changes: int
    setting: str
    timeline: tuple[Sample, ...] = field(repr=False)
    wall_seconds: float = 0.0
    seed: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "strategy": self.strategy,
            "seed": self.seed,
            "aggregate_mbps": round(self.aggregate_mbps, 1),
            "jain": round(self.jain, 4),
            "efficiency": round(self.efficiency, 4),
            "converge_intervals": self.converge_intervals,
            "changes": self.changes,
            "setting": self.setting,
            "wall_seconds": round(self.wall_seconds, 2),
        }


_CONTROLLERS: dict[str, ControllerFactory] = {}


def register_controller(name: str, factory: ControllerFactory) -> None:
    """Make a closed-loop strategy available to the suite under ``name``."""
    _CONTROLLERS[name] = factory


def _builtin_controllers() -> None:
    """The daemon's adaptive policy, registered on first use (it imports the daemon)."""
    if "adaptive" not in _CONTROLLERS:
        from simulator.closed_loop import adaptive_controller

        _CONTROLLERS["adaptive"] = adaptive_controller


def controllers() -> list[str]:
    _builtin_controllers()
    return sorted(_CONTROLLERS)


# --------------------------------------------------------------------------- scenarios
def _mixed(n: int, pcpus: int, workload: str) -> Scenario:
    return parse_scenario(
        {
            "name": f"{workload}-{n}-on-{pcpus}cpu",
            "duration_s": 60,
            "host": {"pcpus": pcpus, "nics": 2 if workload == "forward" else 1},
            "domains": [{"name": "dom", "count": n, "workload": workload}],
        }
    )


def suite_scenarios(quick: bool = False) -> list[Scenario]:
    """The evaluation set. ``quick`` keeps one representative of each kind."""
    out: list[Scenario] = []
    sizes = (8,) if quick else (1, 2, 4, 8)
    for workload in ("send", "receive", "forward"):
        for n in sizes:
            out.append(report_scenario(workload, n_domus=n, duration_s=60, warmup_s=0))
    if not quick:
        for workload in ("receive", "forward"):
            out.append(_mixed(16, 4, workload))
            out.append(_mixed(32, 8, workload))
    out.append(
        parse_scenario(
            {
                "name": "half-receive-half-forward",
                "duration_s": 60,
                "host": {"nics": 2},
                "domains": [
                    {"name": "rx", "count": 4, "workload": "receive"},
                    {"name": "fw", "count": 4, "workload": "forward"},
                ],
            }
        )
    )
    out.append(
        parse_scenario(
            {
                "name": "network-among-burners",
                "duration_s": 60,
                "domains": [
                    {"name": "net", "workload": "receive"},
                    {"name": "burn", "count": 3, "workload": "burn", "duty": 1.0},
                ],
            }
        )
    )
    out.append(
        parse_scenario(
            {
                "name": "app-limited",
                "duration_s": 60,
                "domains": [
                    {"name": "greedy", "count": 3, "workload": "send"},
                    {
                        "name": "limited",
                        "workload": "tcp_rate",
                        "direction": "send",
                        "rate_mbps": 100,
                    },
                ],
            }
        )
    )
    out.append(
        parse_scenario(
            {
                "name": "join-leave",
                "duration_s": 120,
                "domains": [
                    {"name": "base", "count": 2, "workload": "receive"},
                    {"name": "extra", "count": 6, "workload": "receive", "start_s": 30},
                ],
                "phases": [
                    {"at_s": 80, "action": "stop", "domain": f"extra{i}"} for i in range(1, 7)
                ],
            }
        )
    )
    return out


# --------------------------------------------------------------------------- measuring
def _network_domids(host: SimulatedHost) -> list[int]:
    return [d.domid for d in host.domains() if d.domid != 0 and d.workload in NETWORK_WORKLOADS]


def _pin(host: SimulatedHost, pinned: bool) -> None:
    """dom0 alone on pCPU 0 and the domUs on the others, or everything everywhere."""
    all_cpus = frozenset(range(host.pcpus))
    rest = all_cpus - {0} or all_cpus
    for d in host.domains():
        if d.domid == 0:
            host.set_pinning(0, [frozenset({0}) if pinned else all_cpus])
        else:
            host.set_pinning(d.domid, [rest if pinned else all_cpus] * d.vcpus)


def run_strategy(
    scenario: Scenario,
    strategy: str,
    *,
    dom0_weight: int | None = None,
    pinned: bool = False,
    seed: int = 0,
    interval_s: float = INTERVAL_S,
) -> SuiteResult:
    """Run one scenario under a static setting or a registered controller."""
    started = time.perf_counter()
    _builtin_controllers()
    host = SimulatedHost(scenario, seed=seed)
    controller: Controller | None = None
    setting = "default weights"
    if strategy in _CONTROLLERS:
        controller = _CONTROLLERS[strategy](host, interval_s)
        setting = "closed loop"
    elif dom0_weight is not None or pinned:
        if dom0_weight is not None:
            host.set_weight(0, dom0_weight)
        if pinned:
            _pin(host, True)
        setting = f"dom0 weight {host.domain(0).weight}" + (", dom0 pinned" if pinned else "")
    intervals = max(1, round(scenario.duration_s / interval_s))
    samples: list[Sample] = []
    changes = 0
    delivered = {domid: host.delivered_segments(domid) for domid in _network_domids(host)}
    for k in range(1, intervals + 1):
        host.advance(interval_s)
        # The domains that ran from the interval's start, those stopped since included; one
        # created during the interval is measured from the next.
        rates = [
            goodput_mbps(host.delivered_segments(domid) - before, interval_s)
            for domid, before in delivered.items()
        ]
        measured = frozenset(delivered)
        delivered = {domid: host.delivered_segments(domid) for domid in _network_domids(host)}
        dom0 = host.domain(0)
        samples.append(
            Sample(
                t_s=k * interval_s,
                aggregate_mbps=sum(rates),
                jain=jain_index(rates),
                dom0_weight=dom0.weight,
                dom0_pinned=dom0.pinning[0] != frozenset(range(host.pcpus)),
                measured=measured,
            )
        )
        if controller is not None:
            changes += controller(host)
    second = samples[len(samples) // 2 :]
    aggregate = sum(s.aggregate_mbps for s in second) / len(second)
    jain = sum(s.jain for s in second) / len(second)
    return SuiteResult(
        scenario=scenario.name,
        strategy=strategy,
        aggregate_mbps=aggregate,
        jain=jain,
        efficiency=aggregate / link_goodput_mbps(scenario.host.link_mbps),
        converge_intervals=converge_intervals(samples),
        changes=changes,
        setting=setting,
        timeline=tuple(samples),
        wall_seconds=time.perf_counter() - started,
        seed=seed,
    )


#: How far below the settled aggregate (fraction of it) and how far from the settled Jain
#: a sample may be and still count as settled, on a quiet host.
AGGREGATE_BAND = 0.05
JAIN_BAND = 0.03
#: On a noisy host the bands widen to this many times the host's own interval-to-interval
#: noise, and at most to this many times the quiet bands.
NOISE_BANDS = 3.0
MAX_WIDENING = 3.0
#: Fewest settled samples under the final setting the noise is estimated from.
MIN_SETTLED = 5


def converge_intervals(samples: list[Sample]) -> int:
    """Intervals to settle after the worst disturbance.

    The run is cut into phases wherever the set of network domUs measured changes (the
    start is the first disturbance). Within a phase, a sample is settled when its aggregate
    is no more than the aggregate band below, and its Jain within the Jain band of, the
    phase's second-half means; the phase converges after k intervals when every sample
    from k to the middle of the phase is settled. Only the first half is examined, so a
    phase unsettled up to its middle counts about half its length: a large figure means
    "did not settle" for a phase that long. Counting from each disturbance keeps a join at
    30 s from being charged 15 intervals.

    The bands are 5 % and 0.03, or three standard deviations of the host's own noise in
    the second half where that is wider (capped at three times those; see `_band`): a
    host whose aggregate swings 10 % between intervals under a fixed setting never stays
    within 5 % of anything, and a narrower band would time the noise, not the settling.
    """
    return max((_settle_intervals(phase) for phase in _phases(samples)), default=0)


def _settle_intervals(phase: list[Sample]) -> int:
    half = len(phase) // 2
    second = phase[half:]
    aggregate = statistics.fmean(s.aggregate_mbps for s in second)
    jain = statistics.fmean(s.jain for s in second)
    aggregate_band = _band(AGGREGATE_BAND * aggregate, second, lambda s: s.aggregate_mbps)
    jain_band = _band(JAIN_BAND, second, lambda s: s.jain)
    k = half
    while (
        k > 0
        and phase[k - 1].aggregate_mbps >= aggregate - aggregate_band
        and abs(phase[k - 1].jain - jain) <= jain_band
    ):
        k -= 1
    return k


def _band(quiet: float, settled: list[Sample], value: Callable[[Sample], float]) -> float:
    """``quiet``, or wider to cover the host's own noise in the ``settled`` samples.

    The noise is the standard deviation of the settled samples taken under the phase's
    final dom0 setting: what the host does by itself once the strategy has stopped
    changing it, slow wander included (a host's throughput drifts over several intervals
    as often as it jitters), while a strategy's own changes of setting are not counted.
    With fewer than ``MIN_SETTLED`` such samples, the band stays ``quiet``.
    """
    final = _setting(settled[-1])
    values = [value(s) for s in settled if _setting(s) == final]
    if len(values) < MIN_SETTLED:
        return quiet
    return min(max(quiet, NOISE_BANDS * statistics.pstdev(values)), MAX_WIDENING * quiet)


def _setting(sample: Sample) -> tuple[int, bool]:
    return sample.dom0_weight, sample.dom0_pinned


def _phases(samples: list[Sample]) -> list[list[Sample]]:
    """Runs of consecutive samples that measured the same network domUs."""
    phases: list[list[Sample]] = []
    for s in samples:
        if phases and phases[-1][-1].measured == s.measured:
            phases[-1].append(s)
        else:
            phases.append([s])
    return phases


def objective(result: SuiteResult) -> float:
    """What the oracle maximises: throughput that is shared fairly."""
    return result.aggregate_mbps * result.jain


@dataclass(frozen=True)
class _Run:
    """One simulation of the suite: a scenario under a static setting or a controller."""

    scenario: Scenario
    strategy: str
    seed: int
    dom0_weight: int | None = None
    pinned: bool = False


def _runs(scenario: Scenario, strategy: str, seed: int) -> list[_Run]:
    """The simulations a strategy takes: the oracle's sweep, or one."""
    if strategy == "oracle":
        pins = (False, True) if scenario.host.pcpus >= 2 else (False,)
        return [_Run(scenario, "oracle", seed, w, p) for p in pins for w in ORACLE_WEIGHTS]
    if strategy == "formula":
        weights = [d.weight for d in scenario.domains if d.workload in NETWORK_WORKLOADS
                   for _ in range(d.count) if d.start_s == 0]  # fmt: skip
        return [_Run(scenario, "formula", seed, formula_weight(weights))]
    return [_Run(scenario, strategy, seed)]  # "default" or a controller


def _execute(run: _Run) -> SuiteResult:
    return run_strategy(
        run.scenario, run.strategy, dom0_weight=run.dom0_weight, pinned=run.pinned, seed=run.seed
    )


def _best(sweep: list[SuiteResult]) -> SuiteResult:
    """The oracle's pick: the highest objective, the first of near-equals (in sweep order);
    its wall time is the sum of the sweep's runs (more than elapsed when they ran side by
    side)."""
    best = sweep[0]
    for result in sweep[1:]:
        if objective(result) > objective(best) * 1.0001:
            best = result
    return replace(best, wall_seconds=sum(r.wall_seconds for r in sweep))


def oracle(scenario: Scenario, seed: int = 0) -> SuiteResult:
    """The best static setting: every oracle weight, with and without dom0 pinning."""
    return _best([_execute(run) for run in _runs(scenario, "oracle", seed)])


def check_strategies(strategies: Sequence[str]) -> list[str]:
    """The strategies named, each once, in order; ValueError names an unknown one."""
    known = ["default", "formula", "oracle", *controllers()]
    unknown = [s for s in strategies if s not in known]
    if unknown or not strategies:
        what = f"unknown strategy {unknown[0]!r}" if unknown else "name at least one"
        raise ValueError(f"{what}; known: {', '.join(known)}")
    return list(dict.fromkeys(strategies))


#: Told after each simulation of a suite run: how many are done, of how many.
Progress = Callable[[int, int], None]


def run_suite(
    scenarios: list[Scenario],
    strategies: list[str],
    seeds: Sequence[int] = (0,),
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[SuiteResult]:
    """Every scenario under every strategy, once per seed, in that order. The strategies
    are checked before anything runs.

    With ``jobs`` > 1 the simulations (each of the oracle's sweep on its own) run in that
    many processes, at most one per CPU this process may use. Each is seeded and shares
    nothing, so the results are those of one process, wall times aside. Processes are
    forked, so controllers registered before the call are there too; an error in one, or an
    interrupt, ends them all. ``progress`` hears of each simulation as its result is taken,
    in order.
    """
    chosen = check_strategies(strategies)
    groups = [
        _runs(scenario, strategy, seed)
        for scenario in scenarios
        for strategy in chosen
        for seed in dict.fromkeys(seeds)
    ]
    flat = [run for group in groups for run in group]
    processes = min(jobs, len(flat), len(os.sched_getaffinity(0)))
    if processes > 1:
        # multiprocessing's Pool, not concurrent.futures': leaving its block terminates the
        # workers, so a failed run or ^C does not wait for the runs in flight.
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            return _collect(groups, pool.imap(_execute, flat, chunksize=1), progress)
    return _collect(groups, map(_execute, flat), progress)


def _collect(
    groups: list[list[_Run]], done: Iterator[SuiteResult], progress: Progress | None
) -> list[SuiteResult]:
    """One result per group, from its simulations taken in order: the oracle's pick of a
    sweep, the one run of any other strategy."""
    total = sum(len(group) for group in groups)
    finished = 0
    results = []
    for group in groups:
        sweep = []
        for result in itertools.islice(done, len(group)):
            sweep.append(result)
            finished += 1
            if progress is not None:
                progress(finished, total)
        results.append(_best(sweep) if group[0].strategy == "oracle" else sweep[0])
    return results


@dataclass(frozen=True)
class Spread:
    """One scenario under one strategy across seeds: how much of a figure is the seed's."""

    scenario: str
    strategy: str
    seeds: tuple[int, ...]
    aggregate_mbps: tuple[float, float, float]  # lowest, mean, highest
    jain: tuple[float, float, float]
    converge_intervals: tuple[int, float, int]  # lowest, median, highest
    changes: tuple[int, float, int]

    def to_json(self) -> dict[str, object]:
        def rounded(figures: tuple[float, float, float], digits: int) -> dict[str, float]:
            return dict(
                zip(("min", "mean", "max"), (round(f, digits) for f in figures), strict=True)
            )

        def counts(figures: tuple[int, float, int]) -> dict[str, float]:
            return dict(zip(("min", "median", "max"), figures, strict=True))

        return {
            "scenario": self.scenario,
            "strategy": self.strategy,
            "seeds": list(self.seeds),
            "aggregate_mbps": rounded(self.aggregate_mbps, 1),
            "jain": rounded(self.jain, 4),
            "converge_intervals": counts(self.converge_intervals),
            "changes": counts(self.changes),
        }


def spread(results: list[SuiteResult]) -> list[Spread]:
    """Group the runs by scenario and strategy (first-seen order) and summarise each group."""
    groups: dict[tuple[str, str], list[SuiteResult]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.strategy), []).append(r)

    def mean_range(values: list[float]) -> tuple[float, float, float]:
        return min(values), statistics.fmean(values), max(values)

    def median_range(values: list[int]) -> tuple[int, float, int]:
        return min(values), statistics.median(values), max(values)

    return [
        Spread(
            scenario=scenario,
            strategy=strategy,
            seeds=tuple(r.seed for r in runs),
            aggregate_mbps=mean_range([r.aggregate_mbps for r in runs]),
            jain=mean_range([r.jain for r in runs]),
            converge_intervals=median_range([r.converge_intervals for r in runs]),
            changes=median_range([r.changes for r in runs]),
        )
        for (scenario, strategy), runs in groups.items()
    ]
