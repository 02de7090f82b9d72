"""The simulated Xen host: credit scheduler, split driver, NICs, TCP and workloads, wired up.

`SimulatedHost` is what backends and reports use. It exposes what a real host exposes
(cumulative vif counters guest's point of view, CPU nanoseconds per domain, scheduler
settings, vCPU pinning) and is driven by `advance`, which runs virtual time forward. The
clock never reads the wall clock; a run is a pure function of the scenario and the seed.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from dataclasses import dataclass
from functools import partial

from simulator.credit import CreditScheduler, Domain, Guest
from simulator.engine import NS_PER_MS, NS_PER_S, Engine
from simulator.netback import Dom0Netback
from simulator.network import Nic, Vif
from simulator.scenario import (
    DOM0_NAME,
    NETWORK_WORKLOADS,
    PhaseSpec,
    Scenario,
    WorkloadSpec,
    moment_ns,
)
from simulator.tcp import ACK, DATA, PAYLOAD_BYTES, Chunk, Flow
from simulator.workloads import Burner, DomUNet, Idle, Remote
from xvrd.backends.base import VifCounters

_UUID_NS = uuidlib.UUID("6b1f4f52-5b7e-4a57-9a0c-7a7264000000")
DOM0_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class SimDomain:
    """A snapshot of one running domain, as a host would report it."""

    domid: int
    name: str
    uuid: str
    creation_seq: int
    vcpus: int
    weight: int
    cap: int
    pinning: tuple[frozenset[int], ...]
    cpu_ns: int
    vifs: tuple[VifCounters, ...]  # guest's point of view, as a host reports them
    workload: str


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """What one domain did from its creation until now or until it stopped: what a report
    over a window needs of a domain that started, stopped or changed workload inside it."""

    domain: SimDomain  # now, or as it was when it stopped
    stopped_ns: int | None
    delivered_segments: int  # over every network workload it has had
    workloads: tuple[Workload, ...]  # every workload it has had, oldest first


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload a domain had from ``since_ns``: what a report needs of it."""

    since_ns: int
    name: str
    # Where its flow's data met the wire, (NIC index, "in" or "out"), None without a flow:
    # each such direction of a link carries at most one link's goodput.
    data_path: tuple[int, str] | None


class _Live:
    """Book-keeping of one running domain."""

    __slots__ = (
        "delivered_before",
        "domid",
        "flow",
        "guest",
        "name",
        "sched",
        "seq",
        "uuid",
        "vif",
        "workload",
        "workloads",
    )

    def __init__(self, domid: int, name: str, uuid: str, seq: int, sched: Domain) -> None:
        self.domid = domid
        self.name = name
        self.uuid = uuid
        self.seq = seq
        self.sched = sched
        self.vif: Vif | None = None
        self.flow: Flow | None = None
        self.guest: DomUNet | Burner | Idle | Dom0Netback | None = None
        self.workload = "idle"
        self.delivered_before = 0  # by the flows of its earlier workloads
        self.workloads: list[Workload] = []

    def delivered(self) -> int:
        return self.delivered_before + (self.flow.delivered if self.flow is not None else 0)


class SimulatedHost:
    """A Xen host in virtual time."""

    def __init__(self, scenario: Scenario, seed: int = 0) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rng = random.Random(seed)
        # Names this boot, as a host's kernel boot ID does: each SimulatedHost is a fresh
        # boot. Not part of the simulation (random, outside the seeded generator).
        self.boot_id = uuidlib.uuid4().hex
        host = scenario.host
        self.engine = Engine()
        self.sched = CreditScheduler(self.engine, host.pcpus)
        self.engine.after_event = self.sched.flush
        self.nics = [Nic(i, host.link_mbps * 1e6) for i in range(host.nics)]
        self.netback = Dom0Netback(
            self.engine,
            self.nics,
            self._remote_receive,
            self._drop,
            nested_events=host.dom0_kernel == "2.6.16-xen",
        )
        self.remote = Remote(self.engine, self.netback, self.rng)
        self._live: dict[int, _Live] = {}
        self._stopped: dict[int, DomainRecord] = {}
        self._next_domid = 1
        self._seq = 0
        self._flow_ids = 0
        self._ports = len(self.nics)

        guests: list[Guest] = [self.netback] + [Idle() for _ in range(host.dom0_vcpus - 1)]
        dom0 = self.sched.add_domain(0, host.dom0_weight, host.dom0_cap, guests)
        v0 = dom0.vcpus[0]
        # Callbacks the compiled event loop calls thousands of times a simulated second:
        # partials and bound methods, which run without a Python frame of their own.
        self.netback.wake_self = partial(self.sched.wake, v0)
        self.netback.preempt_pending = v0.resched_pending
        rec = _Live(0, DOM0_NAME, DOM0_UUID, 0, dom0)
        rec.guest = self.netback
        rec.workload = "dom0"
        self._live[0] = rec
        if host.dom0_pinning is not None:
            for v in dom0.vcpus:
                self.sched.set_affinity(v, frozenset(host.dom0_pinning))

        for spec in scenario.domains:
            for name in spec.names():
                self.engine.at(moment_ns(spec.start_s), self._start_domain, name, spec)
                if spec.stop_s is not None:
                    self.engine.at(moment_ns(spec.stop_s), self._stop_domain, name)
        for phase in scenario.phases:
            self.engine.at(moment_ns(phase.at_s), self._apply_phase, phase)
        self.engine.run_until(0)

    # ------------------------------------------------------------------ clock
    @property
    def now_ns(self) -> int:
        return self.engine.now

    @property
    def pcpus(self) -> int:
        return len(self.sched.pcpus)

    def advance(self, seconds: float) -> None:
        """Run the model forward by ``seconds`` of virtual time."""
        if seconds < 0:
            raise ValueError("cannot advance by a negative time")
        self.engine.run_until(self.engine.now + int(seconds * NS_PER_S))

    # ------------------------------------------------------------------ observation
    def domains(self) -> list[SimDomain]:
        """Running domains in creation order, dom0 first."""
        return [self._snapshot(rec) for rec in sorted(self._live.values(), key=lambda r: r.seq)]

    def domain(self, domid: int) -> SimDomain:
        """One running domain; KeyError if it is not running."""
        return self._snapshot(self._live[domid])

    def idle_ns(self) -> int:
        """Cumulative idle time summed over all pCPUs."""
        return sum(self.sched.idle_ns(pc) for pc in self.sched.pcpus)

    def delivered_segments(self, domid: int) -> int:
        """TCP segments the domain's flows have delivered to their receiving applications;
        for a domain that has stopped, its final count (what iperf prints as it exits)."""
        rec = self._live.get(domid)
        if rec is None:
            return self._stopped[domid].delivered_segments
        return rec.delivered()

    def records(self) -> list[DomainRecord]:
        """Every domain this boot, stopped ones included, in creation order, dom0 first."""
        running = [self._record(rec) for rec in self._live.values()]
        everyone = running + list(self._stopped.values())
        return sorted(everyone, key=lambda r: r.domain.creation_seq)

    def _record(self, rec: _Live, stopped_ns: int | None = None) -> DomainRecord:
        return DomainRecord(
            domain=self._snapshot(rec),
            stopped_ns=stopped_ns,
            delivered_segments=rec.delivered(),
            workloads=tuple(rec.workloads),
        )

    def ping_rtts_ns(self, domid: int) -> list[int]:
        rec = self._live[domid]
        return list(rec.flow.rtt_samples) if rec.flow is not None and rec.flow.ping else []

    def _snapshot(self, rec: _Live) -> SimDomain:
        d = rec.sched
        vifs: tuple[VifCounters, ...] = ()
        if rec.vif is not None:
            c = rec.vif.counters
            vifs = (
                VifCounters(
                    rec.vif.name,
                    c.rx_bytes,
                    c.rx_packets,
                    c.rx_drops,
                    c.tx_bytes,
                    c.tx_packets,
                    c.tx_drops,
                ),
            )
        return SimDomain(
            domid=rec.domid,
            name=rec.name,
            uuid=rec.uuid,
            creation_seq=rec.seq,
            vcpus=len(d.vcpus),
            weight=d.weight,
            cap=d.cap,
            pinning=tuple(v.affinity for v in d.vcpus),
            cpu_ns=sum(self.sched.cpu_ns(v) for v in d.vcpus),
            vifs=vifs,
            workload=rec.workload,
        )

    # ------------------------------------------------------------------ settings
    def set_weight(self, domid: int, weight: int) -> None:
        self.sched.set_weight(self._live[domid].sched, weight)

    def set_cap(self, domid: int, cap: int) -> None:
        self.sched.set_cap(self._live[domid].sched, cap)

    def set_pinning(self, domid: int, pinning: list[frozenset[int]]) -> None:
        """Set each vCPU's affinity; one set for all vCPUs is accepted too."""
        d = self._live[domid].sched
        if len(pinning) == 1 and len(d.vcpus) > 1:
            pinning = pinning * len(d.vcpus)
        if len(pinning) != len(d.vcpus):
            raise ValueError(f"expected {len(d.vcpus)} CPU sets (one per vCPU), got {len(pinning)}")
        for cpus in pinning:
            if not cpus or any(c < 0 or c >= self.pcpus for c in cpus):
                raise ValueError(f"CPU set must be a non-empty subset of 0..{self.pcpus - 1}")
        for v, cpus in zip(d.vcpus, pinning, strict=True):
            self.sched.set_affinity(v, frozenset(cpus))

    # ------------------------------------------------------------------ lifecycle
    def _by_name(self, name: str) -> _Live | None:
        for rec in self._live.values():
            if rec.name == name:
                return rec
        return None

    def _start_domain(self, name: str, spec: WorkloadSpec) -> None:
        if self._by_name(name) is not None:
            return
        domid = self._next_domid
        self._next_domid += 1
        self._seq += 1
        weight = getattr(spec, "weight", 256) or 256
        cap = getattr(spec, "cap", 0) or 0
        uuid = str(uuidlib.uuid5(_UUID_NS, f"{self.seed}/{name}"))
        placeholder = Idle()
        d = self.sched.add_domain(domid, weight, cap, [placeholder])
        rec = _Live(domid, name, uuid, self._seq, d)
        self._live[domid] = rec
        v = d.vcpus[0]
        pinning = getattr(spec, "pinning", None)
        if pinning is not None:
            self.sched.set_affinity(v, frozenset(pinning))
        rec.vif = Vif(domid, 0, self._ports, partial(self.sched.wake, v))
        self._ports += 1
        self.netback.attach_vif(rec.vif)
        self._set_workload(rec, spec)

    def _set_workload(self, rec: _Live, spec: WorkloadSpec) -> None:
        if isinstance(rec.guest, DomUNet | Burner):
            rec.guest.stop()
        rec.delivered_before = rec.delivered()
        v = rec.sched.vcpus[0]
        wake = partial(self.sched.wake, v)
        assert rec.vif is not None
        guest: DomUNet | Burner | Idle
        flow: Flow | None = None
        path: tuple[int, str] | None = None
        w = spec.workload
        if w in NETWORK_WORKLOADS or w == "ping":
            self._flow_ids += 1
            rate_pps = 0.0
            if w == "tcp_rate":
                assert spec.rate_mbps is not None
                rate_pps = spec.rate_mbps * 1e6 / (PAYLOAD_BYTES * 8)
            flow = Flow(self._flow_ids, app_rate_pps=rate_pps)
            flow.vif = rec.vif
            role = spec.direction if w == "tcp_rate" else w
            if role == "receive" or w == "ping":
                flow.src_nic = self.nics[0]
            elif role == "send":
                flow.dst_nic = self.nics[0]
            else:  # forward: in on NIC 0, out on NIC 1
                flow.src_nic, flow.dst_nic = self.nics[0], self.nics[1]
            if w != "ping":
                entry = flow.src_nic is not None
                nic = flow.src_nic if entry else flow.dst_nic
                path = (nic.index, "in" if entry else "out")
            flow.ping = w == "ping"
            guest = DomUNet(
                self.engine,
                vif=rec.vif,
                flow=flow,
                role=role,
                dom0=self.netback,
                remote=self.remote,
            )
        elif w == "burn":
            # Its own seeded stream: adding a burner leaves every other draw as it was.
            guest = Burner(self.engine, spec.duty, random.Random(f"{self.seed}/{rec.name}/burn"))
        else:
            guest = Idle()
        guest.wake_self = wake
        self.sched.set_guest(v, guest)
        rec.guest = guest
        rec.flow = flow
        rec.workload = w
        rec.workloads.append(Workload(self.engine.now, w, path))
        guest.start()
        if isinstance(guest, DomUNet) and w == "ping":
            interval = int(spec.interval_ms * NS_PER_MS)
            self.engine.at(self.engine.now, self.remote.ping, flow, interval)

    def _stop_domain(self, name: str) -> None:
        rec = self._by_name(name)
        if rec is None or rec.domid == 0:
            return
        if isinstance(rec.guest, DomUNet | Burner):
            rec.guest.stop()
        if rec.vif is not None:
            self.netback.detach_vif(rec.vif)
        self._stopped[rec.domid] = self._record(rec, stopped_ns=self.engine.now)
        self.sched.remove_domain(rec.sched)
        del self._live[rec.domid]

    def _apply_phase(self, phase: PhaseSpec) -> None:
        if phase.action == "start":
            self._start_domain(phase.domain, self._spec_for(phase.domain, phase))
            return
        rec = self._by_name(phase.domain)
        if rec is None:
            return
        if phase.action == "stop":
            self._stop_domain(phase.domain)
        elif phase.action == "workload":
            self._set_workload(rec, phase)
        elif phase.action == "weight" and phase.weight is not None:
            self.sched.set_weight(rec.sched, phase.weight)
        elif phase.action == "cap" and phase.cap is not None:
            self.sched.set_cap(rec.sched, phase.cap)

    def _spec_for(self, name: str, phase: PhaseSpec) -> WorkloadSpec:
        for spec in self.scenario.domains:
            if name in spec.names():
                return spec
        return phase

    # ------------------------------------------------------------------ packet fates
    def _remote_receive(self, chunk: Chunk) -> None:
        self.remote.receive(chunk)

    def _drop(self, chunk: Chunk) -> None:
        flow, kind, count, acked, _ = chunk
        if flow.ping:
            return
        if kind == DATA:
            flow.on_data_lost(count, self.engine.now)
        elif kind == ACK:
            flow.on_ack_lost(acked)
