"""The simulator backend: a `SimulatedHost` behind the Backend Protocol.

Two clocks: *live* (the daemon): the simulated host is advanced to ``speed`` times the wall
time elapsed since start whenever the daemon reads the clock, so it runs alongside real time
(faster with ``speed > 1``). *Batch* (``speed=None``, experiments and tests): the clock moves
only when the caller advances the host, by exactly one control interval between ticks, and
the daemon's tick runs through the same code either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from simulator.host import SimulatedHost
from simulator.scenario import Scenario
from xvrd.backends.base import (
    XEN_WEIGHT_RANGE,
    BackendUnavailable,
    Domain,
    DomainCounters,
    DomainGone,
    HostInfo,
    InvalidSetting,
    Pinning,
    SchedParams,
)


class SimulatorBackend:
    """Implements `xvrd.backends.base.Backend` on a simulated Xen host."""

    def __init__(
        self,
        host: SimulatedHost,
        *,
        speed: float | None = 1.0,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.speed = speed
        self._wall = wall_clock
        self._wall_start = wall_clock()
        self._sim_start_ns = host.now_ns
        self._uuids: dict[str, int] = {}
        self._closed = False

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, seed: int = 0, speed: float | None = 1.0
    ) -> SimulatorBackend:
        return cls(SimulatedHost(scenario, seed=seed), speed=speed)

    # ------------------------------------------------------------------ clock
    def _check(self) -> None:
        if self._closed:
            raise BackendUnavailable("simulator backend is closed")

    def _catch_up(self) -> None:
        if self.speed is None:
            return
        target = self._sim_start_ns + int((self._wall() - self._wall_start) * self.speed * 1e9)
        if target > self.host.now_ns:
            self.host.advance((target - self.host.now_ns) / 1e9)

    def clock_ns(self) -> int:
        self._check()
        self._catch_up()
        return self.host.now_ns

    # ------------------------------------------------------------------ reads
    def info(self) -> HostInfo:
        self._check()
        return HostInfo(
            kind="simulator",
            uri=f"sim:///{self.host.scenario.name}",
            scheduler="credit",
            cpu_ids=frozenset(range(self.host.pcpus)),
            weight_range=XEN_WEIGHT_RANGE,
            supports_cap=True,
            supports_dom0_pinning=True,
            boot_id=self.host.boot_id,
            link_mbps=self.host.scenario.host.link_mbps,
        )

    def list_domains(self) -> list[Domain]:
        self._check()
        out = []
        self._uuids = {}
        for d in self.host.domains():
            self._uuids[d.uuid] = d.domid
            out.append(Domain(d.domid, d.name, d.uuid, d.creation_seq, d.vcpus))
        return out

    def _domid(self, uuid: str) -> int:
        self._check()
        domid = self._uuids.get(uuid)
        if domid is None:
            for d in self.host.domains():
                self._uuids[d.uuid] = d.domid
            domid = self._uuids.get(uuid)
        if domid is None:
            raise DomainGone(uuid)
        try:
            self.host.domain(domid)
        except KeyError:
            self._uuids.pop(uuid, None)
            raise DomainGone(uuid) from None
        return domid

    def read_counters(self, uuid: str) -> DomainCounters:
        d = self.host.domain(self._domid(uuid))
        return DomainCounters(uuid=uuid, cpu_ns=d.cpu_ns, vifs=d.vifs)

    def get_sched(self, uuid: str) -> SchedParams:
        d = self.host.domain(self._domid(uuid))
        return SchedParams(weight=d.weight, cap=d.cap)

    def get_pinning(self, uuid: str) -> Pinning:
        d = self.host.domain(self._domid(uuid))
        return Pinning(tuple(d.pinning))

    # ------------------------------------------------------------------ writes
    def set_weight(self, uuid: str, weight: int) -> None:
        domid = self._domid(uuid)
        if not XEN_WEIGHT_RANGE.contains(weight):
            raise InvalidSetting(f"weight must be in [1, 65535], got {weight}")
        self.host.set_weight(domid, weight)

    def set_cap(self, uuid: str, cap: int) -> None:
        domid = self._domid(uuid)
        try:
            self.host.set_cap(domid, cap)
        except ValueError as exc:
            raise InvalidSetting(str(exc)) from None

    def set_pinning(self, uuid: str, pinning: Pinning) -> None:
        domid = self._domid(uuid)
        try:
            self.host.set_pinning(domid, list(pinning.vcpus))
        except ValueError as exc:
            raise InvalidSetting(str(exc)) from None

    def close(self) -> None:
        self._closed = True
