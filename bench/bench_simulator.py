"""Simulated seconds per wall-clock second of the simulated host.

    python bench/bench_simulator.py [--seconds 10]

Prints, for the report's receive experiment with 8 domUs (the figure the project tracks:
at least 10x, goal 100x) and a few other loads, how many simulated seconds one wall second
buys, after a warm-up. Ratios in one run are what to compare; the machine is noisy.
"""

from __future__ import annotations

import argparse
import time

import simulator
import simulator.credit
from simulator.host import SimulatedHost
from simulator.scenario import report_scenario

CASES = [
    ("receive", 8, 256),
    ("receive", 8, 4096),
    ("send", 8, 256),
    ("forward", 8, 256),
    ("receive", 1, 256),
]


def speed(workload: str, n_domus: int, dom0_weight: int, seconds: float) -> tuple[float, int]:
    host = SimulatedHost(report_scenario(workload, n_domus=n_domus, dom0_weight=dom0_weight))
    host.advance(2.0)
    events_before = host.engine._seq
    started = time.perf_counter()
    host.advance(seconds)
    wall = time.perf_counter() - started
    return seconds / wall, int((host.engine._seq - events_before) / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per case")
    args = parser.parse_args()
    compiled = simulator.credit.__file__.endswith(".so")
    print(f"simulator modules: {'compiled with mypyc' if compiled else 'pure Python'}")
    print(f"{'experiment':<28} {'sim s / wall s':>14} {'events / sim s':>15}")
    for workload, n, weight in CASES:
        ratio, events = speed(workload, n, weight, args.seconds)
        label = f"{workload} N={n} dom0={weight}"
        print(f"{label:<28} {ratio:14.1f} {events:15d}")


if __name__ == "__main__":
    main()
