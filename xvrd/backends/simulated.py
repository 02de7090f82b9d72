"""The simulated Xen host behind the Backend Protocol.

Two ways to drive its clock, both through the same tick code path:

- live (the daemon): `sync()` before each read advances the simulated host by the wall time
  elapsed since the last sync, times ``speed``;
- batch: the caller runs ``backend.host.advance(interval_s)`` itself between ticks and never
  calls `sync` (``speed=None``), so each tick sees exactly one control interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from simulator.host import SimDomain, SimulatedHost
from simulator.scenario import Scenario, ScenarioError, load_scenario
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
    VifCounters,
)

_SHIPPED = Path(__file__).resolve().parent.parent.parent / "simulator" / "scenarios"


def resolve_scenario(spec: str) -> Scenario:
    """A scenario from a file path or the name of a shipped one (``receive-8``).

    Raises `ValueError` with one message naming the scenario when it cannot be loaded.
    """
    path = Path(spec)
    if not path.exists() and "/" not in spec:
        path = _SHIPPED / f"{spec.removesuffix('.toml')}.toml"
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise ValueError(str(exc)) from None


class SimulatorBackend:
    """Adapts `SimulatedHost` (addressed by domid) to the Backend Protocol (by UUID)."""

    def __init__(
        self,
        host: SimulatedHost,
        *,
        speed: float | None = 1.0,
        wall_ns: Callable[[], int] = time.monotonic_ns,
        uri: str = "simulator:///",
    ) -> None:
        self.host = host
        self.speed = speed
        self._wall_ns = wall_ns
        self._last_wall = wall_ns()
        self._uri = uri
        self._closed = False
        self._cache: dict[str, SimDomain] | None = None
        self._cache_ns = -1

    # -------------------------------------------------------------- clock
    def sync(self) -> None:
        """Advance the simulated host by the wall time since the last sync (live mode)."""
        now = self._wall_ns()
        if self.speed is not None and now > self._last_wall:
            self.host.advance((now - self._last_wall) / 1e9 * self.speed)
        self._last_wall = now

    def clock_ns(self) -> int:
        self._check()
        return self.host.now_ns

    # -------------------------------------------------------------- observation
    def info(self) -> HostInfo:
        self._check()
        return HostInfo(
            kind="simulator",
            uri=self._uri,
            scheduler=self.host.scenario.host.scheduler,
            cpus=self.host.pcpus,
            weight_range=XEN_WEIGHT_RANGE,
            supports_cap=True,
            supports_dom0_pinning=True,
        )

    def list_domains(self) -> list[Domain]:
        self._check()
        return [
            Domain(d.domid, d.name, d.uuid, d.creation_seq, d.vcpus)
            for d in self._snapshot().values()
        ]

    def _snapshot(self) -> dict[str, SimDomain]:
        """Every running domain by UUID, read once per simulated instant and setting change."""
        self._check()
        now = self.host.now_ns
        if self._cache is None or self._cache_ns != now:
            self._cache = {d.uuid: d for d in self.host.domains()}
            self._cache_ns = now
        return self._cache

    def _get(self, uuid: str) -> SimDomain:
        try:
            return self._snapshot()[uuid]
        except KeyError:
            raise DomainGone(uuid) from None

    def _domid(self, uuid: str) -> int:
        domid = self._get(uuid).domid
        self._cache = None  # a setter follows: the snapshot would be stale
        return domid

    def read_counters(self, uuid: str) -> DomainCounters:
        d = self._get(uuid)
        vifs = tuple(
            VifCounters(
                v.name, v.rx_bytes, v.rx_packets, v.rx_drops, v.tx_bytes, v.tx_packets, v.tx_drops
            )
            for v in d.vifs
        )
        return DomainCounters(uuid=uuid, cpu_ns=d.cpu_ns, vifs=vifs)

    def get_sched(self, uuid: str) -> SchedParams:
        d = self._get(uuid)
        return SchedParams(weight=d.weight, cap=d.cap)

    def get_pinning(self, uuid: str) -> Pinning:
        d = self._get(uuid)
        return Pinning(tuple(d.pinning))

    # -------------------------------------------------------------- settings
    def set_weight(self, uuid: str, weight: int) -> None:
        if not XEN_WEIGHT_RANGE.contains(weight):
            raise InvalidSetting(
                f"weight must be between {XEN_WEIGHT_RANGE.low} and {XEN_WEIGHT_RANGE.high}"
                f" (got {weight})"
            )
        domid = self._domid(uuid)
        try:
            self.host.set_weight(domid, weight)
        except KeyError:
            raise DomainGone(uuid) from None
        except ValueError as exc:
            raise InvalidSetting(str(exc)) from None

    def set_cap(self, uuid: str, cap: int) -> None:
        if cap < 0:
            raise InvalidSetting(f"cap must be >= 0 (got {cap})")
        domid = self._domid(uuid)
        try:
            self.host.set_cap(domid, cap)
        except KeyError:
            raise DomainGone(uuid) from None
        except ValueError as exc:
            raise InvalidSetting(str(exc)) from None

    def set_pinning(self, uuid: str, pinning: Pinning) -> None:
        domid = self._domid(uuid)
        try:
            self.host.set_pinning(domid, list(pinning.vcpus))
        except KeyError:
            raise DomainGone(uuid) from None
        except ValueError as exc:
            raise InvalidSetting(str(exc)) from None

    def close(self) -> None:
        self._closed = True

    def _check(self) -> None:
        if self._closed:
            raise BackendUnavailable("simulated host connection closed")
