"""`xvrd simulate`: run an experiment on the simulated host, or check it against the report.

xvrd simulate --workload receive --domus 8 [--dom0-weight 2048] [--json]
xvrd simulate --scenario FILE [--duration 60] [--seed 3]
xvrd simulate calibrate [--json]
xvrd simulate suite [--quick | --scenarios NAMES] [--strategies LIST] [--duration S]
                    [--seed N | --seeds 0-4] [--jobs N] [--json] [--plot DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.report import RunResult, link_goodput_mbps, run
from simulator.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    report_scenario,
)
from xvrd.exits import EX_CONFIG
from xvrd.ranges import format_ranges, parse_ranges

if TYPE_CHECKING:
    from simulator.closed_loop import Change
    from simulator.host import SimulatedHost
    from simulator.report import Controller
    from simulator.suite import Spread, SuiteResult

EX_CALIBRATION = 1  # some cell is out of tolerance
DEFAULT_STRATEGIES = "default,formula,adaptive,oracle"

#: The flags each action reads besides --seed and --json: any other one given is refused
#: rather than silently ignored.
_FLAGS = {
    "scenario": "--scenario", "workload": "--workload", "domus": "--domus",
    "dom0_weight": "--dom0-weight", "domu_weight": "--domu-weight", "pcpus": "--pcpus",
    "duration": "--duration", "warmup": "--warmup", "policy": "--policy",
    "strategies": "--strategies", "quick": "--quick", "plot": "--plot",
    "scenarios": "--scenarios", "seeds": "--seeds", "jobs": "--jobs",
}  # fmt: skip
_READS = {
    "run": {"scenario", "workload", "domus", "dom0_weight", "domu_weight", "pcpus",
            "duration", "warmup", "policy"},
    "calibrate": {"duration", "warmup"},
    "suite": {"duration", "strategies", "quick", "plot", "scenarios", "seeds", "jobs"},
}  # fmt: skip

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


#: The longest simulated span a flag accepts, as scenario files do: one day.
MAX_SIM_SECONDS = 86_400.0


def _seconds(text: str, *, zero_ok: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {text!r})") from None
    low_ok = value >= 0 if zero_ok else value > 0
    if not (low_ok and value <= MAX_SIM_SECONDS):  # also refuses nan
        low = ">= 0" if zero_ok else "> 0"
        raise argparse.ArgumentTypeError(f"must be {low} and <= {MAX_SIM_SECONDS:g} (got {text})")
    return value


def _positive_float(text: str) -> float:
    return _seconds(text, zero_ok=False)


def _non_negative_float(text: str) -> float:
    return _seconds(text, zero_ok=True)


def _int_in(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer (got {text!r})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}] (got {value})")
        return value

    return parse


#: The most processes a suite run starts.
MAX_JOBS = 256
#: The most seeds one suite run takes: each one repeats every run.
MAX_SEEDS = 100
SEED_MAX = 2**63 - 1


def _seed_list(text: str) -> list[int]:
    try:
        return sorted(parse_ranges(text, SEED_MAX, max_count=MAX_SEEDS))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"must be seeds from 0 to 2**63-1 as a list and ranges, at most {MAX_SEEDS} of "
            f"them, e.g. 0-4 or 1,5,9 (got {text!r}: {exc})"
        ) from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run an experiment on the simulated Xen host",
        description=(
            "Run a scenario on the simulated Xen host and report per-domain throughput and "
            "CPU, dom0 CPU, idle CPU, aggregate throughput, Jain's fairness index and "
            "efficiency. 'calibrate' compares every reference cell with the simulation."
        ),
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["run", "calibrate", "suite"],
        default="run",
        help="run (default), calibrate, or suite",
    )
    # Not an argparse exclusive group: giving both is a conflict like the others (exit 78).
    p.add_argument("--scenario", metavar="FILE", help="scenario file (TOML)")
    p.add_argument(
        "--workload",
        choices=["send", "receive", "forward"],
        help="the report's experiment: one greedy TCP flow per domU (default receive)",
    )
    p.add_argument(
        "--domus", type=_int_in(1, 1024), default=None, help="number of domUs (default 8)"
    )
    p.add_argument("--dom0-weight", type=_int_in(1, 65535), help="dom0's credit weight")
    p.add_argument("--domu-weight", type=_int_in(1, 65535), help="every domU's credit weight")
    p.add_argument("--pcpus", type=_int_in(1, 256), help="physical CPUs")
    p.add_argument(
        "--duration",
        type=_positive_float,
        help="simulated seconds measured (default: the scenario's, 20 for --workload; "
        "calibrate: 10 per cell)",
    )
    p.add_argument(
        "--warmup",
        type=_non_negative_float,
        help="simulated seconds before (default: the scenario's, 5 for --workload; "
        "calibrate: 3 per cell)",
    )
    p.add_argument("--seed", type=_int_in(0, SEED_MAX), help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--policy",
        choices=["static", "adaptive"],
        help="static (default): the settings as given; adaptive: the daemon's policy in "
        "closed loop, listing each setting it changed and when",
    )
    suite = p.add_argument_group("suite")
    suite.add_argument(
        "--strategies",
        help="comma-separated: default, formula, oracle and registered controllers "
        f"(default {DEFAULT_STRATEGIES})",
    )
    suite.add_argument("--quick", action="store_true", help="one scenario of each kind")
    suite.add_argument("--plot", metavar="DIR", help="write PNG timelines (needs matplotlib)")
    suite.add_argument(
        "--scenarios", metavar="NAMES", help="comma-separated: run only these suite scenarios"
    )
    suite.add_argument(
        "--seeds",
        type=_seed_list,
        metavar="LIST",
        help="run everything once per seed (e.g. 0-4) and add the spread over seeds",
    )
    suite.add_argument(
        "--jobs",
        type=_int_in(1, MAX_JOBS),
        metavar="N",
        help="run the simulations in N processes (default 1; at most one per CPU); the "
        "figures are the same",
    )
    p.set_defaults(func=main)


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is not None:
        if not args.scenario:
            raise ScenarioError("--scenario: a file name is needed (got '')")
        if args.workload is not None:
            raise ScenarioError("--scenario, --workload: give one of them")
        if args.domus is not None:
            raise ScenarioError("--domus: only with --workload (a scenario file lists domains)")
        scenario = load_scenario(args.scenario)
    else:
        scenario = report_scenario(
            args.workload or "receive",
            n_domus=args.domus if args.domus is not None else 8,
        )
    host: dict[str, Any] = {}
    if args.dom0_weight is not None:
        host["dom0_weight"] = args.dom0_weight
    if args.pcpus is not None:
        host["pcpus"] = args.pcpus
    update: dict[str, Any] = {}
    if host:
        update["host"] = scenario.host.model_copy(update=host)
    if args.domu_weight is not None:
        update["domains"] = [
            d.model_copy(update={"weight": args.domu_weight}) for d in scenario.domains
        ]
    if args.duration is not None:
        update["duration_s"] = args.duration
    if args.warmup is not None:
        update["warmup_s"] = args.warmup
    if not update:
        return scenario
    # Re-validate the combination (e.g. pinning to a CPU that --pcpus removed).
    from simulator.scenario import parse_scenario

    # Only what was written or given: a default re-stated would count as given (a ping
    # interval on a receive domain, say) and be refused.
    data = scenario.model_copy(update=update).model_dump(exclude_unset=True)
    return parse_scenario(data, "command line")


def format_table(result: RunResult, scenario: Scenario) -> str:
    h = scenario.host
    lines = [
        f"{scenario.name}: {scenario.duration_s:g} s simulated after {scenario.warmup_s:g} s "
        f"warm-up; {h.pcpus} pCPUs, {h.nics} NIC(s) at {h.link_mbps:g} Mb/s, dom0 Linux "
        f"{h.dom0_kernel}, seed {result.seed}",
        "",
    ]
    wl = max([9] + [len(d.workload) for d in result.domains])
    lines.append(f"{'domain':<12} {'workload':<{wl}} {'weight':>6} {'Mb/s':>9} {'CPU %':>7}")
    partial = False
    names = collections.Counter(d.name for d in result.domains)
    for d in result.domains:
        # A domain stopped and started again under its name is another domain (new ID).
        name = d.name if names[d.name] == 1 else f"{d.name}#{d.domid}"
        tput = f"{d.throughput_mbps:9.1f}" if d.network else f"{'-':>9}"
        ran = ""
        if d.ran_s < scenario.duration_s - 1e-9:
            ran, partial = f"  (ran {d.ran_s:g} s)", True
        lines.append(f"{name:<12} {d.workload:<{wl}} {d.weight:>6} {tput} {d.cpu_pct:7.2f}{ran}")
    dom0 = f"{'dom0':<12} {'':<{wl}} {result.dom0_weight:>6} {'':>9} {result.dom0_cpu_pct:7.2f}"
    lines.append(dom0)
    lines.append(f"{'idle':<12} {'':<{wl}} {'':>6} {'':>9} {result.idle_pct:7.2f}")
    speed = result.sim_seconds / result.wall_seconds if result.wall_seconds > 0 else float("inf")
    if result.has_network:
        directions = round(result.capacity_mbps / link_goodput_mbps(h.link_mbps))
        of = f"{result.capacity_mbps:.2f} Mb/s goodput" + (
            f", {directions} link directions" if directions > 1 else ""
        )
        summary = (
            f"aggregate {result.aggregate_mbps:.1f} Mb/s   Jain {result.jain:.3f}   "
            f"efficiency {result.efficiency:.3f} (of {of})"
        )
    else:
        summary = "no network domains: no aggregate, Jain or efficiency"
    lines += ["", summary]
    if partial:
        lines.append("a domain that ran for part of the window is averaged over all of it")
    lines += [
        f"simulated {result.sim_seconds:g} s in {result.wall_seconds:.2f} s ({speed:.0f}x)",
    ]
    return "\n".join(lines)


def _format_changes(changes: list[Change]) -> str:
    """The settings the adaptive policy changed, at the simulated time of each tick."""
    if not changes:
        return "\nthe adaptive policy changed nothing"
    lines = ["", "settings the adaptive policy changed (simulated seconds from the start):"]
    for c in changes:
        r = c.record
        if r is None:
            lines.append(f"{c.t_s:8.1f}  and {c.more} more setting(s)")
        else:
            lines.append(f"{c.t_s:8.1f}  {r.domain} {r.setting} {r.old} -> {r.new}: {r.reason}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        scenario = _scenario(args)
    except ScenarioError as exc:
        print(f"xvrd simulate: {exc}", file=sys.stderr)
        return EX_CONFIG
    controller = None
    made: list[Any] = []
    if args.policy == "adaptive":
        from simulator.closed_loop import adaptive_controller

        def controller(host: SimulatedHost, interval_s: float) -> Controller:
            made.append(adaptive_controller(host, interval_s))
            return made[-1]  # type: ignore[no-any-return]

    result = run(scenario, seed=args.seed or 0, controller=controller)
    changes = made[0].changes if made else None
    if args.json:
        document = result.to_json()
        if changes is not None:
            document["changes"] = [c.to_json() for c in changes]
        print(json.dumps(document, indent=2))
    else:
        print(format_table(result, scenario))
        if changes is not None:
            print(_format_changes(changes))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from simulator.calibration import checks, default_runner

    started = time.perf_counter()
    runner = default_runner(
        10.0 if args.duration is None else args.duration,
        3.0 if args.warmup is None else args.warmup,
        args.seed or 0,
    )
    results = list(checks(runner))
    failed = [c for c in results if c.ok is False]
    if args.json:
        out = {
            "checks": [c.to_json() for c in results],
            "failed": len(failed),
            "checked": sum(1 for c in results if c.ok is not None),
            "wall_seconds": round(time.perf_counter() - started, 2),
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"{'cell':<28} {'metric':<24} {'report':>9} {'simulated':>10} {'tolerance':>10}  ok")
        for c in results:
            ref = "" if c.reference is None else f"{c.reference:9.3f}"
            mark = {True: "yes", False: "NO", None: "-"}[c.ok]
            sim = f"{c.simulated:10.3f}"
            print(f"{c.cell:<28} {c.metric:<24} {ref:>9} {sim} {c.tolerance:>10}  {mark}")
        checked = sum(1 for c in results if c.ok is not None)
        print(f"\n{checked - len(failed)} of {checked} checks within tolerance")
    return EX_CALIBRATION if failed else 0


def _suite_error(flags: str, message: str) -> int:
    print(f"xvrd simulate suite: {flags}: {message}", file=sys.stderr)
    return EX_CONFIG


def _suite(args: argparse.Namespace) -> int:
    from simulator.suite import check_strategies, run_suite, spread

    if args.seeds is not None and args.seed is not None:
        return _suite_error("--seed, --seeds", "give one of them")
    if args.scenarios is not None and args.quick:
        return _suite_error("--quick, --scenarios", "give one of them")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _suite_error("--plot", "needs matplotlib: pip install 'xvrd[plot]'")
        # Before the simulations, not after half an hour of them.
        try:
            Path(args.plot).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _suite_error("--plot", f"cannot make directory {args.plot!r}: {exc}")
    try:
        scenarios = _suite_scenarios(args.quick, args.scenarios)
    except ValueError as exc:
        return _suite_error("--scenarios", str(exc))
    if args.duration is not None:
        scenarios = [s.model_copy(update={"duration_s": args.duration}) for s in scenarios]
    chosen = args.strategies or DEFAULT_STRATEGIES
    try:
        strategies = check_strategies([s.strip() for s in chosen.split(",") if s.strip()])
    except ValueError as exc:
        return _suite_error("--strategies", str(exc))
    seeds = args.seeds if args.seeds is not None else [args.seed or 0]
    # On a terminal, a running count: the full suite runs for the best part of an hour.
    progress = _show_progress if sys.stderr.isatty() else None
    results = run_suite(scenarios, strategies, seeds=seeds, jobs=args.jobs or 1, progress=progress)
    if args.plot is not None:
        from simulator.plot import plot_timelines

        for path in plot_timelines(results, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    spreads = spread(results)
    if args.json:
        out = {"results": [r.to_json() for r in results], "spread": [s.to_json() for s in spreads]}
        print(json.dumps(out, indent=2))
        return 0
    _print_runs(results)
    if args.seeds is not None:
        print()
        _print_spread(spreads, seeds)
    return 0


def _show_progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\rxvrd simulate suite: {done} of {total} simulations done", end=end, file=sys.stderr)


def _suite_scenarios(quick: bool, names: str | None) -> list[Scenario]:
    """The suite's scenarios, the quick set, or the ones named (ValueError names the unknown)."""
    from simulator.suite import suite_scenarios

    scenarios = suite_scenarios(quick=quick)
    if names is None:
        return scenarios
    by_name = {s.name: s for s in scenarios}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or not wanted:
        what = f"unknown scenario {unknown[0]!r}" if unknown else "name at least one"
        raise ValueError(f"{what}; known: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(wanted)]


def _print_runs(results: list[SuiteResult]) -> None:
    width = max(4, *(len(str(r.seed)) for r in results)) if results else 4
    print(
        f"{'scenario':<28} {'strategy':<9} {'seed':>{width}} {'Mb/s':>7} {'Jain':>6} "
        f"{'eff':>6} {'converge':>8} {'changes':>7}  setting"
    )
    for r in results:
        print(
            f"{r.scenario:<28} {r.strategy:<9} {r.seed:>{width}} {r.aggregate_mbps:7.1f} "
            f"{r.jain:6.3f} {r.efficiency:6.3f} {r.converge_intervals:>8} {r.changes:>7}  "
            f"{r.setting}"
        )


def _print_spread(spreads: list[Spread], seeds: list[int]) -> None:
    print(f"spread over seeds {format_ranges(seeds)}: mean [lowest-highest] of Mb/s and Jain, "
          "median [lowest-highest] of converge and changes")  # fmt: skip
    print(
        f"{'scenario':<28} {'strategy':<9} {'Mb/s':>23} {'Jain':>21} "
        f"{'converge':>13} {'changes':>13}"
    )
    for sp in spreads:
        low, mean, high = sp.aggregate_mbps
        jlow, jmean, jhigh = sp.jain
        mbps = f"{mean:.1f} [{low:.1f}-{high:.1f}]"
        jain = f"{jmean:.3f} [{jlow:.3f}-{jhigh:.3f}]"
        print(
            f"{sp.scenario:<28} {sp.strategy:<9} {mbps:>23} {jain:>21} "
            f"{_median_range(sp.converge_intervals):>13} {_median_range(sp.changes):>13}"
        )


def _median_range(figures: tuple[int, float, int]) -> str:
    low, median, high = figures
    return f"{median:g} [{low}-{high}]"


def main(args: argparse.Namespace) -> int:
    from xvrd.logs import configure_logging

    # Batch runs drive the daemon's code: its change-by-change log is for a live daemon.
    configure_logging("console", "error")
    unused = [
        flag
        for key, flag in _FLAGS.items()
        # Identity, not equality: --warmup 0 was given (0.0 == False); --quick unset is False.
        if key not in _READS[args.action]
        and getattr(args, key) is not None
        and getattr(args, key) is not False
    ]
    if unused:
        name = "xvrd simulate" + ("" if args.action == "run" else f" {args.action}")
        print(f"{name}: {', '.join(unused)}: not used here", file=sys.stderr)
        return EX_CONFIG
    if args.action == "calibrate":
        return _calibrate(args)
    if args.action == "suite":
        return _suite(args)
    return _run(args)
