"""The daemon's CPU time per tick on simulated hosts of 8, 64 and 256 domains.

    python bench/bench_daemon.py [--ticks 50]

Each tick is the daemon's real tick (read every domain through the Backend, sample, assess,
decide, act) on a simulated host advanced by one interval between ticks, as a batch run does.
The simulator's own work is excluded: the simulated host is advanced outside the timed region,
and the time the backend spends inside the simulator building its per-instant snapshot of the
domains (`SimulatedHost.domains`) is measured and subtracted. Goal: <= 2 ms per tick at 64.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import structlog

from simulator.host import SimulatedHost
from simulator.scenario import parse_scenario
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import Settings
from xvrd.daemon import Daemon
from xvrd.state import StateStore

INTERVAL_S = 0.2


def host_with(n_domains: int) -> SimulatedHost:
    """dom0 plus n-1 domUs: a quarter receiving at a modest rate, the rest idle."""
    domus = n_domains - 1
    active = max(1, domus // 4)
    return SimulatedHost(
        parse_scenario(
            {
                "host": {"pcpus": 8},
                "domains": [
                    {"name": "net", "count": active, "workload": "tcp_rate", "rate_mbps": 5.0},
                    {"name": "idle", "count": domus - active, "workload": "idle"},
                ],
            }
        )
    )


def measure(n_domains: int, ticks: int) -> tuple[float, float]:
    """Median and max CPU ms per tick, simulator work excluded."""
    host = host_with(n_domains)
    in_sim = [0.0]
    original = host.domains

    def timed_domains():  # type: ignore[no-untyped-def]
        t = time.thread_time()
        try:
            return original()
        finally:
            in_sim[0] += time.thread_time() - t

    host.domains = timed_domains  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(
            SimulatorBackend(host, speed=None),
            Settings(state_dir=Path(tmp), interval_s=INTERVAL_S),
            StateStore(Path(tmp)),
        )
        daemon.start()
        samples = []
        for i in range(ticks + 2):
            host.advance(INTERVAL_S)
            in_sim[0] = 0.0
            started = time.thread_time()
            result = daemon.tick()
            spent = time.thread_time() - started - in_sim[0]
            if i >= 2:  # the first ticks are baseline and warm-up
                assert result.complete
                samples.append(spent * 1000)
        daemon.stop()
    return statistics.median(samples), max(samples)


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50, help="timed ticks per size")
    args = parser.parse_args()
    print(f"{'domains':>8} {'CPU ms/tick (median)':>21} {'max':>8}")
    for n in (8, 64, 256):
        median, worst = measure(n, args.ticks)
        print(f"{n:>8} {median:21.3f} {worst:8.3f}")


if __name__ == "__main__":
    main()
