"""The daemon's CPU time per tick with 8, 64 and 256 simulated domains.

    python bench/bench_daemon.py [--ticks 50]

The simulated host is advanced one interval between ticks, then its counters are copied
into a snapshot; the tick reads the snapshot, so what is timed (process CPU time) is the
daemon's own work: sampling, rates, assessment, policy, status. Goal: <= 2 ms at 64.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from simulator.scenario import parse_scenario
from xvrd.backends.base import Domain, DomainCounters, HostInfo, Pinning, SchedParams
from xvrd.backends.simulated import SimulatorBackend
from xvrd.commands.run import make_policy
from xvrd.config import given_settings
from xvrd.daemon import Daemon
from xvrd.logs import configure_logging


class Snapshot:
    """A Backend serving one frozen reading of another backend."""

    def __init__(self, source: SimulatorBackend) -> None:
        self.source = source
        self.refresh()

    def refresh(self) -> None:
        src = self.source
        self._info = src.info()
        self._now = src.clock_ns()
        self._domains = src.list_domains()
        self._counters = {d.uuid: src.read_counters(d.uuid) for d in self._domains}
        self._sched = {d.uuid: src.get_sched(d.uuid) for d in self._domains}
        self._pinning = {d.uuid: src.get_pinning(d.uuid) for d in self._domains}

    def info(self) -> HostInfo:
        return self._info

    def clock_ns(self) -> int:
        return self._now

    def list_domains(self) -> list[Domain]:
        return list(self._domains)

    def read_counters(self, uuid: str) -> DomainCounters:
        return self._counters[uuid]

    def get_sched(self, uuid: str) -> SchedParams:
        return self._sched[uuid]

    def get_pinning(self, uuid: str) -> Pinning:
        return self._pinning[uuid]

    def set_weight(self, uuid: str, weight: int) -> None:
        self.source.set_weight(uuid, weight)

    def set_cap(self, uuid: str, cap: int) -> None:
        self.source.set_cap(uuid, cap)

    def set_pinning(self, uuid: str, pinning: Pinning) -> None:
        self.source.set_pinning(uuid, pinning)

    def close(self) -> None:
        self.source.close()


def per_tick_ms(n_domains: int, ticks: int) -> float:
    scenario = parse_scenario(
        {
            "host": {"pcpus": 8},
            "domains": [
                {"name": "rx", "count": min(8, n_domains), "workload": "receive"},
                *(
                    [{"name": "ping", "count": n_domains - 8, "workload": "ping"}]
                    if n_domains > 8
                    else []
                ),
            ],
        }
    )
    source = SimulatorBackend.from_scenario(scenario, speed=None)
    snapshot = Snapshot(source)
    with tempfile.TemporaryDirectory() as state:
        settings = given_settings(backend="simulator", scenario=Path("x"), state_dir=Path(state))
        # The configured policy (adaptive by default), as `xvrd run` builds it: without it
        # the daemon falls back to the no-op policy and the tick times nothing of it.
        daemon = Daemon(settings, snapshot, make_policy(settings))  # type: ignore[arg-type]
        daemon.tick()
        spent = 0.0
        for _ in range(ticks):
            source.host.advance(2.0)
            snapshot.refresh()
            started = time.process_time()
            daemon.tick()
            daemon.status()
            spent += time.process_time() - started
    return spent / ticks * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50)
    args = parser.parse_args()
    # Findings and changes are logged when they happen, not per tick; printed here they
    # would time the terminal and bury the figures.
    configure_logging("json", "error")
    print(f"{'domains':>8} {'daemon CPU ms / tick':>21}")
    for n in (8, 64, 256):
        print(f"{n:>8} {per_tick_ms(n, args.ticks):21.3f}")


if __name__ == "__main__":
    main()
