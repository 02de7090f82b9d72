"""Run a scenario on the simulated host and summarise it the way the reference report does."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from simulator.host import SimulatedHost, Workload
from simulator.scenario import NETWORK_WORKLOADS, Scenario
from simulator.tcp import DATA_WIRE_BYTES, PAYLOAD_BYTES
from simulator.workloads import goodput_mbps
from xvrd.analysis import jain_index


def link_goodput_mbps(link_mbps: float) -> float:
    """Best TCP goodput of one link: payload per full frame on the wire (941.49 at 1 Gb/s)."""
    return link_mbps * PAYLOAD_BYTES / DATA_WIRE_BYTES


@dataclass(frozen=True)
class DomainResult:
    """One domU over the measured window, averaged over all of it even if it ran for less
    (so that the domains' throughputs add up to the aggregate)."""

    name: str
    domid: int
    workload: str  # "receive->send" if a phase changed it during the window
    weight: int
    throughput_mbps: float
    cpu_pct: float
    network: bool  # had a network workload during the window
    ran_s: float  # how long of the window it ran


@dataclass(frozen=True)
class RunResult:
    scenario: str
    seed: int
    domains: list[DomainResult]
    dom0_cpu_pct: float
    dom0_weight: int
    idle_pct: float
    aggregate_mbps: float
    jain: float
    efficiency: float
    sim_seconds: float
    wall_seconds: float
    # The most the network domains' directions could carry: one link's goodput for each
    # direction of a NIC their data entered or left the host by (2x for send with receive).
    capacity_mbps: float = 0.0

    @property
    def has_network(self) -> bool:
        return any(d.network for d in self.domains)

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "domains": [
                {
                    "name": d.name,
                    "domid": d.domid,
                    "workload": d.workload,
                    "throughput_mbps": round(d.throughput_mbps, 2) if d.network else None,
                    "cpu_pct": round(d.cpu_pct, 2),
                    "weight": d.weight,
                    "ran_s": round(d.ran_s, 3),
                }
                for d in self.domains
            ],
            "dom0": {"cpu_pct": round(self.dom0_cpu_pct, 2), "weight": self.dom0_weight},
            "idle_pct": round(self.idle_pct, 2),
            "aggregate_mbps": round(self.aggregate_mbps, 2),
            "jain": round(self.jain, 4) if self.has_network else None,
            "efficiency": round(self.efficiency, 4) if self.has_network else None,
            "capacity_mbps": round(self.capacity_mbps, 2) if self.has_network else None,
            "sim_seconds": self.sim_seconds,
            "wall_seconds": round(self.wall_seconds, 3),
        }


#: A closed-loop controller: called after each control interval, returns how many settings
#: it changed; a factory builds one for a host and an interval.
Controller = Callable[[SimulatedHost], int]
ControllerFactory = Callable[[SimulatedHost, float], Controller]


def _advance(
    host: SimulatedHost, seconds: float, controller: Controller | None, interval_s: float
) -> None:
    """Advance the host; with a controller, one control interval at a time."""
    if controller is None:
        host.advance(seconds)
        return
    end = host.now_ns + int(seconds * 1e9)
    while host.now_ns + int(interval_s * 1e9) <= end:
        host.advance(interval_s)
        controller(host)
    if end > host.now_ns:
        host.advance((end - host.now_ns) / 1e9)


def _in_window(
    workloads: tuple[Workload, ...], window_ns: int, end_ns: int
) -> list[tuple[Workload, int]]:
    """The workloads a domain had inside [window_ns, end_ns), with how long each."""
    spans = []
    for i, w in enumerate(workloads):
        until = workloads[i + 1].since_ns if i + 1 < len(workloads) else end_ns
        overlap = min(until, end_ns) - max(w.since_ns, window_ns)
        if overlap > 0:
            spans.append((w, overlap))
    return spans


def run(
    scenario: Scenario,
    seed: int = 0,
    controller: ControllerFactory | None = None,
    interval_s: float = 2.0,
) -> RunResult:
    """Warm up, then measure over ``duration_s`` of simulated time. With a ``controller``
    factory (the daemon's closed loop), it is called every ``interval_s`` throughout."""
    started = time.perf_counter()
    host = SimulatedHost(scenario, seed=seed)
    control = controller(host, interval_s) if controller is not None else None
    _advance(host, scenario.warmup_s, control, interval_s)
    window_ns = host.now_ns
    before = {r.domain.domid: r for r in host.records()}
    idle0 = host.idle_ns()
    _advance(host, scenario.duration_s, control, interval_s)
    end_ns = host.now_ns
    idle1 = host.idle_ns()
    span_ns = scenario.duration_s * 1e9
    capacity_ns = span_ns * host.pcpus
    results: list[DomainResult] = []
    paths: set[tuple[int, str]] = set()
    # Each network domain's rate while it had a network workload: Jain compares how the
    # domains shared the link, not how long each of them ran.
    rates: list[float] = []
    dom0_cpu = 0.0
    dom0_weight = 0
    for r in host.records():
        if r.stopped_ns is not None and r.stopped_ns <= window_ns:
            continue  # gone before the window
        d = r.domain
        prev = before.get(d.domid)
        cpu_pct = 100.0 * (d.cpu_ns - (prev.domain.cpu_ns if prev else 0)) / capacity_ns
        if d.domid == 0:
            dom0_cpu, dom0_weight = cpu_pct, d.weight
            continue
        gone_ns = r.stopped_ns if r.stopped_ns is not None else end_ns
        spans = _in_window(r.workloads, window_ns, gone_ns)
        segments = r.delivered_segments - (prev.delivered_segments if prev else 0)
        network_ns = sum(ns for w, ns in spans if w.name in NETWORK_WORKLOADS)
        network = network_ns > 0 or segments > 0
        if network:
            paths |= {w.data_path for w, _ in spans if w.data_path is not None}
            if network_ns > 0:
                rates.append(goodput_mbps(segments, network_ns / 1e9))
        results.append(
            DomainResult(
                name=d.name,
                domid=d.domid,
                workload="->".join(w.name for w, _ in spans) or d.workload,
                weight=d.weight,
                throughput_mbps=goodput_mbps(segments, scenario.duration_s),
                cpu_pct=cpu_pct,
                network=network,
                ran_s=sum(ns for _, ns in spans) / 1e9,
            )
        )
    aggregate = sum(x.throughput_mbps for x in results if x.network)
    capacity = link_goodput_mbps(scenario.host.link_mbps) * max(1, len(paths))
    return RunResult(
        scenario=scenario.name,
        seed=seed,
        domains=results,
        dom0_cpu_pct=dom0_cpu,
        dom0_weight=dom0_weight,
        idle_pct=100.0 * (idle1 - idle0) / capacity_ns,
        aggregate_mbps=aggregate,
        jain=jain_index(rates),
        efficiency=aggregate / capacity,
        sim_seconds=scenario.duration_s + scenario.warmup_s,
        wall_seconds=time.perf_counter() - started,
        capacity_mbps=capacity,
    )
