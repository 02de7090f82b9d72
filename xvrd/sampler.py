"""Counters to rates: what each domain did over the last interval.

The backend gives cumulative counters; the sampler keeps the previous reading of each domain
(by UUID) and turns the difference into rates. A domain seen for the first time, restarted
(new domain ID) or whose counters went backwards (a reboot resets them) has no rates this
time: a rate is never computed across a reset. Rates sum the vifs present in both readings,
so a vif plugged in between (whose counters hold traffic from before) counts from the next
interval instead of showing as a burst. The observation says whether it is complete,
and the daemon acts only on complete ones. A domain the host cannot read (a vif in a driver
domain, a domain half torn down) is left out, logged when it starts and stops failing, so one
such domain does not stop the daemon seeing and tuning the others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from xvrd.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Domain,
    DomainCounters,
    DomainGone,
    Pinning,
    SchedParams,
)

log = structlog.get_logger("xvrd.sampler")


@dataclass(frozen=True, slots=True)
class DomainRates:
    """One domain over the last interval. Rates are None when there is no valid delta."""

    uuid: str
    domid: int
    name: str
    creation_seq: int
    vcpus: int
    weight: int
    cap: int
    pinning: Pinning
    rx_mbps: float | None = None
    tx_mbps: float | None = None
    rx_pps: float | None = None
    tx_pps: float | None = None
    rx_drops_ps: float | None = None
    tx_drops_ps: float | None = None
    cpu_pct: float | None = None  # share of the whole host, 100 = every pCPU busy

    @property
    def is_dom0(self) -> bool:
        return self.domid == 0

    @property
    def has_rates(self) -> bool:
        return self.cpu_pct is not None

    @property
    def throughput_mbps(self) -> float:
        """What the domain moves: the larger direction (receive, send, or forward)."""
        return max(self.rx_mbps or 0.0, self.tx_mbps or 0.0)


@dataclass(frozen=True, slots=True)
class Observation:
    """Every running domain at one instant of the host's clock, with rates since the last."""

    taken_ns: int
    interval_s: float | None
    cpu_ids: frozenset[int]  # the host's online CPUs
    domains: tuple[DomainRates, ...]
    # domUs listed but not read this time (why is in `Sampler.unreadable`): still running,
    # so not to be taken for destroyed, only missing from this observation.
    unreadable: frozenset[str] = frozenset()

    @property
    def host_cpus(self) -> int:
        """How many CPUs the domains share: what CPU percentages are out of."""
        return len(self.cpu_ids)

    @property
    def complete(self) -> bool:
        """Rates for every domain: safe to act on."""
        return self.interval_s is not None and all(d.has_rates for d in self.domains)

    @property
    def idle_pct(self) -> float | None:
        """Host CPU no domain used (100 minus every domain's share, dom0 included)."""
        if not self.complete:
            return None
        used = sum(d.cpu_pct or 0.0 for d in self.domains)
        return max(0.0, 100.0 - used)

    def dom0(self) -> DomainRates | None:
        return next((d for d in self.domains if d.is_dom0), None)

    def domus(self) -> list[DomainRates]:
        return [d for d in self.domains if not d.is_dom0]

    def running_domus(self) -> frozenset[str]:
        """UUIDs of the domUs running, those not read this time included."""
        return frozenset(d.uuid for d in self.domus()) | self.unreadable


@dataclass(frozen=True, slots=True)
class Unread:
    """A running domain the host could not read, and why: shown in status while it lasts."""

    name: str
    domid: int
    error: str


@dataclass(frozen=True, slots=True)
class _Reading:
    domid: int
    taken_ns: int
    counters: DomainCounters


def _vif_deltas(now: DomainCounters, prev: DomainCounters) -> list[int] | None:
    """rx/tx bytes, packets and drops moved since ``prev``, summed over the vifs present in
    both readings (a vif plugged since brings counts from before this interval: it counts
    from the next one). None if a vif's counters went backwards (re-created)."""
    before = {v.name: v for v in prev.vifs}
    sums = [0] * 6
    for v in now.vifs:
        b = before.get(v.name)
        if b is None:
            continue
        deltas = (
            v.rx_bytes - b.rx_bytes,
            v.rx_packets - b.rx_packets,
            v.rx_drops - b.rx_drops,
            v.tx_bytes - b.tx_bytes,
            v.tx_packets - b.tx_packets,
            v.tx_drops - b.tx_drops,
        )
        if any(d < 0 for d in deltas):
            return None
        sums = [s + d for s, d in zip(sums, deltas, strict=True)]
    return sums


class Sampler:
    """Reads every domain once per tick and keeps the previous reading for deltas."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._previous: dict[str, _Reading] = {}
        self._last_ns: int | None = None
        self.unreadable: dict[str, Unread] = {}  # by UUID, while it lasts

    def reset(self) -> None:
        """Forget previous readings (after a reconnect the baseline is not trustworthy)."""
        self._previous.clear()
        self._last_ns = None
        self.unreadable.clear()

    def sample(self) -> Observation:
        """One reading of the host. Raises BackendUnavailable if the host cannot be reached."""
        backend = self.backend
        cpu_ids = backend.info().cpu_ids
        now = backend.clock_ns()
        readings: dict[str, _Reading] = {}
        rows: list[DomainRates] = []
        unread: set[str] = set()
        listed = backend.list_domains()
        for dom in listed:
            try:
                counters = backend.read_counters(dom.uuid)
                sched = backend.get_sched(dom.uuid)
                pinning = backend.get_pinning(dom.uuid)
            except DomainGone:
                continue  # shut down since the listing: not part of this observation
            except BackendUnavailable:
                raise
            except BackendError as exc:
                if dom.uuid not in self.unreadable:
                    log.warning("domain left out: cannot read it", domain=dom.name, error=str(exc))
                self.unreadable[dom.uuid] = Unread(dom.name, dom.domid, str(exc))
                if not dom.is_dom0:
                    unread.add(dom.uuid)
                if dom.uuid in self._previous:
                    # Rates resume from the last reading once it can be read again.
                    readings[dom.uuid] = self._previous[dom.uuid]
                continue
            if self.unreadable.pop(dom.uuid, None) is not None:
                log.info("domain readable again", domain=dom.name)
            reading = _Reading(dom.domid, now, counters)
            readings[dom.uuid] = reading
            rows.append(self._rates(dom, sched, pinning, reading, len(cpu_ids)))
        running = {dom.uuid for dom in listed}
        self.unreadable = {u: e for u, e in self.unreadable.items() if u in running}
        interval = None if self._last_ns is None else (now - self._last_ns) / 1e9
        if interval is not None and interval <= 0:
            interval = None
        self._previous = readings
        self._last_ns = now
        rows.sort(key=lambda r: (r.domid != 0, r.creation_seq, r.domid))
        return Observation(now, interval, cpu_ids, tuple(rows), frozenset(unread))

    def _rates(
        self,
        dom: Domain,
        sched: SchedParams,
        pinning: Pinning,
        now: _Reading,
        host_cpus: int,
    ) -> DomainRates:
        base = DomainRates(
            uuid=dom.uuid,
            domid=dom.domid,
            name=dom.name,
            creation_seq=dom.creation_seq,
            vcpus=dom.vcpus,
            weight=sched.weight,
            cap=sched.cap,
            pinning=pinning,
        )
        prev = self._previous.get(dom.uuid)
        if prev is None or prev.domid != dom.domid:
            return base  # new, or the same UUID booted again as a new domain
        span_ns = now.taken_ns - prev.taken_ns
        cpu_ns = now.counters.cpu_ns - prev.counters.cpu_ns
        deltas = _vif_deltas(now.counters, prev.counters)
        if span_ns <= 0 or cpu_ns < 0 or deltas is None:
            return base  # counters went backwards: reset, no rate this time
        seconds = span_ns / 1e9
        rxb, rxp, rxd, txb, txp, txd = deltas
        return replace(
            base,
            rx_mbps=rxb * 8 / seconds / 1e6,
            tx_mbps=txb * 8 / seconds / 1e6,
            rx_pps=rxp / seconds,
            tx_pps=txp / seconds,
            rx_drops_ps=rxd / seconds,
            tx_drops_ps=txd / seconds,
            cpu_pct=100.0 * cpu_ns / (span_ns * host_cpus),
        )
