"""Counters to rates: one `Observation` per tick from two consecutive readings.

Rates need two readings of the same domain, so a domain seen for the first time, one whose
counters went backwards (it rebooted: same UUID, counters reset) and one whose domid changed
get no rates on that tick, never a bogus one. Domains that vanished are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

from xvrd.backends.base import Backend, Domain, DomainCounters, DomainGone, Pinning, SchedParams


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything read from the host about one domain at one instant."""

    domain: Domain
    counters: DomainCounters
    sched: SchedParams
    pinning: Pinning


@dataclass(frozen=True, slots=True)
class DomainRates:
    """One domain over the last interval. Rates are None when they cannot be known yet."""

    domain: Domain
    sched: SchedParams
    pinning: Pinning
    rx_mbps: float | None
    tx_mbps: float | None
    cpu_pct: float | None  # % of the whole host (all pCPUs)
    drops_per_s: float | None

    @property
    def complete(self) -> bool:
        return self.rx_mbps is not None and self.cpu_pct is not None


@dataclass(frozen=True, slots=True)
class Observation:
    """The host over one interval: per-domain rates plus dom0 and idle CPU."""

    clock_ns: int
    interval_s: float | None  # None on the first reading
    cpus: int
    domains: tuple[DomainRates, ...]  # dom0 first, creation order
    dom0_cpu_pct: float | None
    idle_pct: float | None

    @property
    def complete(self) -> bool:
        """True when every domain has rates: only then may anything act on it."""
        return self.interval_s is not None and all(d.complete for d in self.domains)


def read_host(backend: Backend) -> tuple[int, list[Reading]]:
    """Read every domain once; a domain that vanishes mid-read is left out.

    `BackendUnavailable` propagates: the caller must not act on a partial host.
    """
    clock = backend.clock_ns()
    readings = []
    for dom in sorted(backend.list_domains(), key=lambda d: d.creation_seq):
        try:
            readings.append(
                Reading(
                    dom,
                    backend.read_counters(dom.uuid),
                    backend.get_sched(dom.uuid),
                    backend.get_pinning(dom.uuid),
                )
            )
        except DomainGone:
            continue
    return clock, readings


def _totals(c: DomainCounters) -> tuple[int, int, int, int]:
    rx = tx = drops = 0
    for v in c.vifs:
        rx += v.rx_bytes
        tx += v.tx_bytes
        drops += v.rx_drops + v.tx_drops
    return rx, tx, drops, c.cpu_ns


class Sampler:
    """Keeps the previous reading of each domain (by UUID) and turns the next into rates."""

    def __init__(self) -> None:
        self._prev: dict[str, tuple[int, int, tuple[int, int, int, int]]] = {}
        self._prev_clock: int | None = None

    def reset(self) -> None:
        """Forget every reading (after a reconnect: counters may not be comparable)."""
        self._prev.clear()
        self._prev_clock = None

    def observe(self, clock_ns: int, readings: list[Reading], cpus: int) -> Observation:
        prev_clock = self._prev_clock
        interval_ns = (
            None if prev_clock is None or clock_ns <= prev_clock else clock_ns - prev_clock
        )
        out = []
        seen: dict[str, tuple[int, int, tuple[int, int, int, int]]] = {}
        total_cpu_pct = 0.0
        all_cpu = interval_ns is not None
        dom0_pct: float | None = None
        for r in readings:
            dom = r.domain
            now = _totals(r.counters)
            seen[dom.uuid] = (dom.domid, clock_ns, now)
            prev = self._prev.get(dom.uuid) if interval_ns is not None else None
            if prev is not None and prev[0] == dom.domid:
                p_rx, p_tx, p_drops, p_cpu = prev[2]
                rx, tx, drops, cpu = now
                if rx >= p_rx and tx >= p_tx and drops >= p_drops and cpu >= p_cpu:
                    dt_ns = clock_ns - prev[1]
                    mbit = 8e3 / dt_ns  # bytes per ns -> Mb/s
                    cpu_pct = 100.0 * (cpu - p_cpu) / (dt_ns * cpus)
                    total_cpu_pct += cpu_pct
                    out.append(
                        DomainRates(
                            dom,
                            r.sched,
                            r.pinning,
                            (rx - p_rx) * mbit,
                            (tx - p_tx) * mbit,
                            cpu_pct,
                            (drops - p_drops) * 1e9 / dt_ns,
                        )
                    )
                    if dom.is_dom0:
                        dom0_pct = cpu_pct
                    continue
            all_cpu = False
            out.append(DomainRates(dom, r.sched, r.pinning, None, None, None, None))
        self._prev = seen
        self._prev_clock = clock_ns
        idle = max(0.0, 100.0 - total_cpu_pct) if all_cpu else None
        return Observation(
            clock_ns=clock_ns,
            interval_s=None if interval_ns is None else interval_ns / 1e9,
            cpus=cpus,
            domains=tuple(out),
            dom0_cpu_pct=dom0_pct,
            idle_pct=idle,
        )
