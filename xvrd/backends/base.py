"""The hypervisor boundary: one Protocol, implemented by the libvirt and simulator backends.

Everything above this module (sampler, analysis, policy, actuator, control socket) sees a host
only through `Backend`. Errors are typed so callers can tell "no domains" from "connection
lost": a backend never returns a sentinel for a failure.

Direction convention, stated once for the whole project: a vif's ``rx`` is what the *domain*
receives and ``tx`` what it sends (the guest's point of view, as libvirt's ``interfaceStats``
reports it for Xen and QEMU alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

DOM0_ID = 0


class BackendError(Exception):
    """Base class of every error a backend raises on purpose."""


class BackendUnavailable(BackendError):
    """The host cannot be reached now (connection refused or lost); retry with backoff."""


class DomainGone(BackendError):
    """The domain vanished between listing and use (shut down, migrated, destroyed)."""

    def __init__(self, uuid: str, detail: str = "") -> None:
        self.uuid = uuid
        super().__init__(f"domain {uuid} is gone" + (f": {detail}" if detail else ""))


class Unsupported(BackendError):
    """The driver cannot do this operation (e.g. no weight parameter, no dom0 pinning)."""


class InvalidSetting(BackendError):
    """A value outside what the host accepts (weight out of range, CPU that does not exist)."""


@dataclass(frozen=True, slots=True)
class WeightRange:
    """The inclusive range of the scheduler's weight parameter and its default."""

    low: int
    high: int
    default: int

    def contains(self, weight: int) -> bool:
        return self.low <= weight <= self.high

    def clamp(self, weight: int) -> int:
        return max(self.low, min(self.high, weight))


#: Xen credit and credit2: weight in [1, 65535], default 256.
XEN_WEIGHT_RANGE = WeightRange(low=1, high=65535, default=256)


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What a backend is connected to; fixed for the life of a connection."""

    kind: str  # "libvirt" or "simulator"
    uri: str
    scheduler: str  # "credit", "credit2", "posix", ...
    # The online physical CPUs, by number. Not always 0..n-1: a CPU taken offline leaves a
    # hole, and a pinning must name the CPUs that exist.
    cpu_ids: frozenset[int]
    weight_range: WeightRange
    supports_cap: bool
    supports_dom0_pinning: bool
    # Changes with every boot of the host; "" when unknown. xvrd's settings are live only,
    # so a reboot puts every original back by itself: originals from another boot are stale.
    boot_id: str = ""
    # The line rate of each NIC in Mb/s where the backend knows it (a simulated host, from
    # its scenario); None for libvirt, which does not: the config's link_mbps then.
    link_mbps: float | None = None

    @property
    def cpus(self) -> int:
        """How many CPUs domains share: what CPU percentages are out of."""
        return len(self.cpu_ids)


@dataclass(frozen=True, slots=True)
class Domain:
    """One domain as listed. ``creation_seq`` orders domains by creation (dom0 first)."""

    domid: int
    name: str
    uuid: str
    creation_seq: int
    vcpus: int

    @property
    def is_dom0(self) -> bool:
        return self.domid == DOM0_ID


@dataclass(frozen=True, slots=True)
class VifCounters:
    """Cumulative counters of one virtual interface, guest's point of view."""

    name: str
    rx_bytes: int
    rx_packets: int
    rx_drops: int
    tx_bytes: int
    tx_packets: int
    tx_drops: int


@dataclass(frozen=True, slots=True)
class DomainCounters:
    """Cumulative counters of one domain at one instant of the host's clock."""

    uuid: str
    cpu_ns: int
    vifs: tuple[VifCounters, ...] = ()


@dataclass(frozen=True, slots=True)
class SchedParams:
    """A domain's scheduler settings. ``cap`` is % of one CPU, 0 meaning no cap."""

    weight: int
    cap: int = 0


@dataclass(frozen=True, slots=True)
class Pinning:
    """The set of physical CPUs each vCPU may run on (index = vCPU number)."""

    vcpus: tuple[frozenset[int], ...] = field(default_factory=tuple)

    def all_cpus(self) -> frozenset[int]:
        out: frozenset[int] = frozenset()
        for cpus in self.vcpus:
            out |= cpus
        return out

    def onto(self, online: frozenset[int]) -> Pinning:
        """This pinning as the host can take it now: a vCPU none of whose CPUs is online
        gets every online CPU, as Xen does to a vCPU whose last CPU is taken offline."""
        return Pinning(tuple(cpus if cpus & online else online for cpus in self.vcpus))

    def within(self, cpus: frozenset[int], vcpus: int) -> Pinning:
        """Each of ``vcpus`` vCPUs kept to ``cpus``: on those of its CPUs among them (a
        domain the operator pinned to some of them stays there), or on all of them where it
        has none there or its affinity is unknown."""
        own = self.vcpus if len(self.vcpus) == vcpus else (cpus,) * vcpus
        return Pinning(tuple((c & cpus) or cpus for c in own))

    def is_pinned(self, online: frozenset[int]) -> bool:
        """Some vCPU is kept off an online CPU. Offline CPUs in an affinity do not count:
        Xen and libvirt report an unpinned vCPU with every CPU the map can hold set."""
        return any(cpus & online != online for cpus in self.vcpus)


@runtime_checkable
class Backend(Protocol):
    """A host xvrd can observe and tune. Domains are addressed by UUID, which survives reboots.

    Every method may raise `BackendUnavailable`; the per-domain ones may raise `DomainGone`;
    setters raise `InvalidSetting` for a value the host would refuse and `Unsupported` for an
    operation the driver lacks. No method returns a sentinel for failure.
    """

    def info(self) -> HostInfo:
        """Describe the connected host (scheduler, CPUs, weight range)."""
        ...

    def clock_ns(self) -> int:
        """The host's monotonic clock, the time base of every counter read."""
        ...

    def list_domains(self) -> list[Domain]:
        """Running domains, dom0 included where the driver lists it, in creation order."""
        ...

    def read_counters(self, uuid: str) -> DomainCounters:
        """Cumulative CPU time and vif counters of one domain."""
        ...

    def get_sched(self, uuid: str) -> SchedParams:
        """Current scheduler parameters of one domain."""
        ...

    def set_weight(self, uuid: str, weight: int) -> None:
        """Set a domain's scheduler weight (validated against `HostInfo.weight_range`)."""
        ...

    def set_cap(self, uuid: str, cap: int) -> None:
        """Set a domain's cap in % of one CPU (0 = none)."""
        ...

    def get_pinning(self, uuid: str) -> Pinning:
        """Current vCPU affinity of one domain; no vCPUs where the host cannot say."""
        ...

    def set_pinning(self, uuid: str, pinning: Pinning) -> None:
        """Set the affinity of each vCPU of one domain."""
        ...

    def close(self) -> None:
        """Release the connection; further calls raise `BackendUnavailable`."""
        ...
