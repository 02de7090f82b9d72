"""The libvirt backend: a real host through libvirtd (libxl on a Xen dom0; QEMU and test too).

This is the only module that imports ``libvirt``. Everything it gets from libvirt goes
through `_sorted`, the one place where a ``libvirtError`` becomes a typed backend error:

- connection refused, lost or closed (RPC/remote errors, "no connect")  -> `BackendUnavailable`
- the domain vanished or stopped (VIR_ERR_NO_DOMAIN, "not running")     -> `DomainGone`
- the driver lacks the operation or the scheduler has no such parameter -> `Unsupported`
- an argument libvirt refused (VIR_ERR_INVALID_ARG and kin)             -> `InvalidSetting`
- anything else                                                          -> `BackendError`

Reconnecting: after a `BackendUnavailable` every call keeps raising it, cheaply, until
`LibvirtBackend.reconnect()` succeeds; the daemon owns the retries and their backoff (it
tries again from its tick, so a dead libvirtd never holds up a shutdown).

Mapping of scheduler parameters to xvrd's weight and cap:

- ``credit`` / ``credit2`` (Xen, libxl driver): ``weight`` in [1, 65535] (default 256) and
  ``cap`` in % of one CPU, 0 = none; both read and set with flags 0, as libxl requires.
- ``posix`` (QEMU/LXC under cgroups): ``cpu_shares`` is the weight, [2, 262144] on cgroup
  v1 (default 1024) and [1, 10000] on cgroup v2 (default 100). The cap maps to the
  *whole-domain* CFS bandwidth: cap = ``global_quota`` / ``global_period`` x 100, with a
  quota of -1 (or any value <= 0) meaning no cap, which is what Xen's per-domain cap means.
- anything else (the test driver's ``fair``, ``rtds``, ``null``, ...) has no weight xvrd can
  tune: `info`, `get_sched`, `set_weight` and `set_cap` raise `Unsupported` saying so.

Domains are listed with one cheap call per tick (no lifecycle event loop to run), active
only, dom0 included where the driver lists it (libxl lists Domain-0 with ID 0). Creation
order is approximated by the domain ID: Xen hands out IDs in increasing order, so the ID
order is the creation order until IDs wrap at 32752, which a dom0 never sees in practice.

Counter direction: libvirt's ``interfaceStats`` reports a vif from the guest's point of
view for both libxl and QEMU (rx = what the domain receives), which is xvrd's convention, so
the numbers are passed through unchanged. A counter the driver does not keep (-1) reads 0.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar
from urllib.parse import urlsplit

import libvirt

from xvrd.backends import vcpu_affinity
from xvrd.backends.base import (
    DOM0_ID,
    XEN_WEIGHT_RANGE,
    BackendError,
    BackendUnavailable,
    Domain,
    DomainCounters,
    DomainGone,
    HostInfo,
    InvalidSetting,
    Pinning,
    SchedParams,
    Unsupported,
    VifCounters,
    WeightRange,
)

#: What the daemon connects to when the configuration does not say (the local libxl driver).
DEFAULT_URI: Final = "xen:///system"

#: Length of the vCPU maps where the driver keeps no CPU map: more CPUs than Xen 4.17 can run
#: (its NR_CPUS is at most 4095); a CPU numbered beyond would read as absent from every map.
UNMAPPED_MAP_CPUS: Final = 4096
#: How old a domain's vif list (from its XML) may get before it is read again, so a vif
#: hot-plugged into a running domain is seen within this time; an unplugged one at once.
VIF_REFRESH_S: Final = 30.0

CGROUP_V1_SHARES: Final = WeightRange(low=2, high=262144, default=1024)
CGROUP_V2_WEIGHT: Final = WeightRange(low=1, high=10000, default=100)

#: libvirt's largest CFS quota (2**44 - 1 us), which it also reports for "max" (no quota).
_CFS_QUOTA_MAX: Final = 17592186044415

_XEN_SCHEDULERS: Final = frozenset({"credit", "credit2"})
_POSIX: Final = "posix"

# Error codes sorted below; looked up by name so an older binding lacking one still imports.
_CONNECTION_CODES: Final = frozenset(
    getattr(libvirt, n, -1)
    for n in ("VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_CONN", "VIR_ERR_RPC", "VIR_ERR_AUTH_FAILED")
)
_CONNECTION_DOMAINS: Final = frozenset(
    getattr(libvirt, n, -1) for n in ("VIR_FROM_RPC", "VIR_FROM_REMOTE")
)
_GONE_CODES: Final = frozenset(
    getattr(libvirt, n, -1) for n in ("VIR_ERR_NO_DOMAIN", "VIR_ERR_INVALID_DOMAIN")
)
_UNSUPPORTED_CODES: Final = frozenset(
    getattr(libvirt, n, -1)
    for n in (
        "VIR_ERR_NO_SUPPORT",
        "VIR_ERR_OPERATION_UNSUPPORTED",
        "VIR_ERR_ARGUMENT_UNSUPPORTED",
        "VIR_ERR_CONFIG_UNSUPPORTED",
    )
)
_INVALID_CODES: Final = frozenset(
    getattr(libvirt, n, -1) for n in ("VIR_ERR_INVALID_ARG", "VIR_ERR_OVERFLOW")
)


_SCHEDULER_REFUSED: Final = re.compile(r"schedulers? (?:is|are) supported")


def _ignore_libvirt_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; xvrd reports them itself."""


def sort_libvirt_error(err: libvirt.libvirtError, uuid: str | None = None) -> BackendError:
    """The typed backend error for a libvirt error: the one place errors are sorted."""
    code = err.get_error_code()
    origin = err.get_error_domain()
    message = str(err.get_error_message() or err)
    lowered = message.lower()
    if code in _CONNECTION_CODES or origin in _CONNECTION_DOMAINS:
        return BackendUnavailable(f"libvirt connection lost: {message}")
    if code in _GONE_CODES or (uuid is not None and "not running" in lowered):
        return DomainGone(uuid or "?", message)
    # libxl reports a scheduler it cannot tune ("Only 'credit' and 'credit2' schedulers are
    # supported"; before libvirt 1.2.x "Only 'credit' scheduler is supported") and Domain-0
    # limits ("Domain-0 does not support ...") as generic errors.
    if (
        code in _UNSUPPORTED_CODES
        or _SCHEDULER_REFUSED.search(lowered)
        or "does not support" in lowered
    ):
        return Unsupported(message)
    if code in _INVALID_CODES:
        return InvalidSetting(message)
    return BackendError(f"libvirt error {code}: {message}")


@dataclass(frozen=True, slots=True)
class _Cpus:
    """The host's CPUs as vCPU maps need them: read once per connection (CPUs brought on
    or off line while xvrd runs need a restart, as the docs say)."""

    map_size: int  # CPUs in one vCPU map
    online: frozenset[int]
    known: bool = True  # False: which CPUs are online is a guess, so dom0 is not pinned


@dataclass(frozen=True, slots=True)
class _Known:
    """What does not change for one running domain (keyed by UUID and domain ID)."""

    domid: int
    vcpus: int
    vifs: tuple[str, ...]
    read_at_s: float  # monotonic time of the XML read: re-read now and then for hotplug


def vif_names(domain_xml: str) -> tuple[str, ...]:
    """Host-side interface names (``<interface><target dev=...>``) from a domain's XML."""
    root = ET.fromstring(domain_xml)
    names = []
    for target in root.findall("./devices/interface/target"):
        dev = target.get("dev")
        if dev:
            names.append(dev)
    return tuple(names)


#: Where a dom0's kernel lists Xen's physical CPUs (drivers/xen/pcpu.c), each with an
#: ``online`` flag but CPU 0, which cannot go offline.
XEN_CPU_SYSFS = Path("/sys/devices/system/xen_cpu")


def xen_online_cpus(root: Path | None = None) -> frozenset[int] | None:
    """Xen's online physical CPUs as this dom0's kernel lists them now (under
    `XEN_CPU_SYSFS`), or None where it lists none (not a dom0)."""
    online: set[int] = set()
    try:
        entries = list((root or XEN_CPU_SYSFS).iterdir())
    except OSError:
        return None
    for entry in entries:
        match = re.fullmatch(r"xen_cpu(\d+)", entry.name)
        if match is None:
            continue
        try:
            flag = (entry / "online").read_text(encoding="ascii").strip()
        except FileNotFoundError:
            flag = "1"
        except OSError:
            continue
        if flag != "0":
            online.add(int(match.group(1)))
    return frozenset(online) or None


def posix_weight_range(cgroup_root: Path = Path("/sys/fs/cgroup")) -> WeightRange:
    """cpu_shares range of a local host: cgroup v2 (unified) or v1 (cpu controller)."""
    if (cgroup_root / "cgroup.controllers").exists():
        return CGROUP_V2_WEIGHT
    return CGROUP_V1_SHARES


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[LibvirtBackend, _P], _R],
) -> Callable[Concatenate[LibvirtBackend, _P], _R]:
    """Serialise a public method: the daemon's tick and its control socket share a backend."""

    def wrapper(self: LibvirtBackend, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper


def _counter(value: int) -> int:
    """libvirt reports -1 for a counter the driver does not keep."""
    return max(0, int(value))


class LibvirtBackend:
    """A host reached through libvirt; implements `xvrd.backends.base.Backend`."""

    def __init__(self, uri: str = DEFAULT_URI, *, connect: bool = True) -> None:
        self.uri = uri
        self._lock = threading.RLock()
        self._conn: Any = None
        self._domains: dict[str, Any] = {}
        self._known: dict[str, _Known] = {}
        self._info: HostInfo | None = None
        self._unsupported_reason: str | None = None
        self._host_cpus: _Cpus | None = None
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        if connect:
            self.reconnect()

    # --- connection -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @_locked
    def reconnect(self) -> None:
        """(Re)open the connection; raises `BackendUnavailable` if libvirtd is not there.

        Cached per-domain facts are dropped: after a libvirtd restart domain IDs and vifs
        are re-read. The scheduler is probed again on the next `info`.
        """
        self._drop_connection()
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as err:
            raise BackendUnavailable(f"cannot connect to {self.uri}: {err}") from err
        if self._conn is None:  # very old bindings returned None instead of raising
            raise BackendUnavailable(f"cannot connect to {self.uri}")

    @_locked
    def close(self) -> None:
        self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._domains.clear()
        self._known.clear()
        self._info = None
        self._unsupported_reason = None
        self._host_cpus = None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def _connection(self) -> Any:
        if self._conn is None:
            raise BackendUnavailable(f"not connected to {self.uri}")
        return self._conn

    @contextlib.contextmanager
    def _sorted(self, uuid: str | None = None) -> Iterator[None]:
        """Turn libvirt errors into typed ones; a lost connection is dropped at once."""
        try:
            yield
        except libvirt.libvirtError as err:
            sorted_err = sort_libvirt_error(err, uuid)
            self._after_error(sorted_err, uuid)
            raise sorted_err from err

    def _after_error(self, err: BackendError, uuid: str | None) -> None:
        """A lost connection is dropped at once; a vanished domain is forgotten."""
        if isinstance(err, BackendUnavailable):
            self._drop_connection()
        elif isinstance(err, DomainGone) and uuid is not None:
            self._forget(uuid)

    def _forget(self, uuid: str) -> None:
        self._domains.pop(uuid, None)
        self._known.pop(uuid, None)

    # --- host -------------------------------------------------------------------------

    @_locked
    def info(self) -> HostInfo:
        """The connected host; raises `Unsupported` once, clearly, for an untunable driver."""
        if self._info is not None:
            return self._info
        conn = self._connection()
        with self._sorted():
            driver = str(conn.getType())
        cpus = self._cpus()
        domains = self.list_domains()
        scheduler, params = self._probe_scheduler(driver, domains)
        if scheduler in _XEN_SCHEDULERS:
            weight_range = XEN_WEIGHT_RANGE
            supports_cap = "cap" in params or scheduler == "credit"
        elif scheduler == _POSIX:
            weight_range = self._posix_range()
            supports_cap = "global_quota" in params
        else:
            self._unsupported_reason = (
                f"libvirt driver {driver} ({self.uri}) uses scheduler '{scheduler}', which has "
                "no weight xvrd can tune (xvrd tunes Xen credit/credit2 'weight' or posix "
                "'cpu_shares')"
            )
            raise Unsupported(self._unsupported_reason)
        has_dom0 = any(d.domid == DOM0_ID for d in domains)
        self._info = HostInfo(
            kind="libvirt",
            uri=self.uri,
            scheduler=scheduler,
            cpu_ids=cpus.online,
            weight_range=weight_range,
            supports_cap=supports_cap,
            supports_dom0_pinning=has_dom0 and cpus.known,
            boot_id=_local_boot_id(self.uri),
        )
        return self._info

    def _probe_scheduler(self, driver: str, domains: list[Domain]) -> tuple[str, dict[str, Any]]:
        """Scheduler name and parameters, asked of the first running domain (dom0 on Xen)."""
        if not domains:
            # QEMU with nothing running: its scheduler is posix whenever cgroups are there.
            if driver.upper() == "QEMU":
                return _POSIX, {"global_quota": -1}
            raise Unsupported(
                f"no running domain on {self.uri} to ask for its scheduler; start one first"
            )
        first = domains[0]
        dom = self._domain(first.uuid)
        with self._sorted(first.uuid):
            name, _nparams = dom.schedulerType()
        params: dict[str, Any] = {}
        if name in _XEN_SCHEDULERS or name == _POSIX:
            with self._sorted(first.uuid):
                params = dict(dom.schedulerParameters())
        return str(name), params

    def _posix_range(self) -> WeightRange:
        # A remote host's cgroup version cannot be seen from here; assume v1's range.
        if urlsplit(self.uri).netloc:
            return CGROUP_V1_SHARES
        return posix_weight_range()

    def clock_ns(self) -> int:
        """Local monotonic clock: libvirt counters carry no timestamp of their own."""
        return time.monotonic_ns()

    # --- domains ----------------------------------------------------------------------

    @_locked
    def list_domains(self) -> list[Domain]:
        conn = self._connection()
        with self._sorted():
            handles = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        rows: list[tuple[int, str, str, int]] = []
        seen: dict[str, Any] = {}
        for dom in handles:
            # ID, name and UUID travel with the handle: no round trip.
            uuid = str(dom.UUIDString())
            domid = int(dom.ID())
            try:
                known = self._known_for(uuid, domid, dom)
            except DomainGone:
                continue  # stopped between the listing and now: not running, not listed
            except BackendUnavailable:
                raise
            except BackendError:
                # One domain's trouble (libxl cannot read a domU being torn down) is not the
                # host's: what was read of it before still describes it, and one never read
                # is left out until it can be.
                cached = self._known.get(uuid)
                if cached is None or cached.domid != domid:
                    continue
                known = cached
            seen[uuid] = dom
            rows.append((domid, str(dom.name()), uuid, known.vcpus))
        self._domains = seen
        for uuid in list(self._known):
            if uuid not in seen:
                del self._known[uuid]
        rows.sort()
        return [
            Domain(domid=domid, name=name, uuid=uuid, creation_seq=seq, vcpus=vcpus)
            for seq, (domid, name, uuid, vcpus) in enumerate(rows)
        ]

    def _known_for(self, uuid: str, domid: int, dom: Any, *, fresh: bool = False) -> _Known:
        """vCPU count and vifs, re-read when the domain restarted or the copy is old."""
        known = self._known.get(uuid)
        now = time.monotonic()
        if fresh or known is None or known.domid != domid or now - known.read_at_s > VIF_REFRESH_S:
            with self._sorted(uuid):
                vcpus = int(dom.info()[3])
                vifs = vif_names(dom.XMLDesc(0))
            known = _Known(domid=domid, vcpus=vcpus, vifs=vifs, read_at_s=now)
            self._known[uuid] = known
        return known

    def _domain(self, uuid: str) -> Any:
        dom = self._domains.get(uuid)
        if dom is not None:
            return dom
        conn = self._connection()
        with self._sorted(uuid):
            dom = conn.lookupByUUIDString(uuid)
            if not dom.isActive():
                raise DomainGone(uuid, "not running")
        self._domains[uuid] = dom
        return dom

    # --- counters ---------------------------------------------------------------------

    @_locked
    def read_counters(self, uuid: str) -> DomainCounters:
        dom = self._domain(uuid)
        known = self._known_for(uuid, int(dom.ID()), dom)
        cpu_ns = self._cpu_ns(uuid, dom)
        try:
            vifs = [self._vif_counters(uuid, dom, name) for name in known.vifs]
        except InvalidSetting:
            # "not a known interface": a vif unplugged since the XML was read. Read the XML
            # again, then the rest. Any other error (a lock held by a save or migration)
            # would only be waited for twice.
            known = self._known_for(uuid, int(dom.ID()), dom, fresh=True)
            vifs = [self._vif_counters(uuid, dom, name) for name in known.vifs]
        return DomainCounters(uuid=uuid, cpu_ns=cpu_ns, vifs=tuple(vifs))

    def _vif_counters(self, uuid: str, dom: Any, name: str) -> VifCounters:
        with self._sorted(uuid):
            stats = dom.interfaceStats(name)
        rx_b, rx_p, _rx_err, rx_drop, tx_b, tx_p, _tx_err, tx_drop = stats
        return VifCounters(
            name=name,
            rx_bytes=_counter(rx_b),
            rx_packets=_counter(rx_p),
            rx_drops=_counter(rx_drop),
            tx_bytes=_counter(tx_b),
            tx_packets=_counter(tx_p),
            tx_drops=_counter(tx_drop),
        )

    def _cpu_ns(self, uuid: str, dom: Any) -> int:
        """Total CPU time: getCPUStats(total) where the driver has it, else info().

        Only a driver without getCPUStats gets info()'s counter, and then every time: on
        some drivers the two differ, and a rate across one of each would be nonsense. Any
        other failure is this domain's error for this reading."""
        try:
            return int(dom.getCPUStats(True)[0]["cpu_time"])
        except (KeyError, IndexError):
            pass
        except libvirt.libvirtError as err:
            sorted_err = sort_libvirt_error(err, uuid)
            if not isinstance(sorted_err, Unsupported):
                self._after_error(sorted_err, uuid)
                raise sorted_err from err
        with self._sorted(uuid):
            return int(dom.info()[4])

    # --- scheduler --------------------------------------------------------------------

    def _require_tunable(self) -> HostInfo:
        if self._unsupported_reason is not None:
            raise Unsupported(self._unsupported_reason)
        return self.info()

    @_locked
    def get_sched(self, uuid: str) -> SchedParams:
        host = self._require_tunable()
        dom = self._domain(uuid)
        with self._sorted(uuid):
            params = dom.schedulerParameters()
        if host.scheduler == _POSIX:
            return SchedParams(weight=int(params["cpu_shares"]), cap=_posix_cap(params))
        return SchedParams(weight=int(params["weight"]), cap=int(params.get("cap", 0)))

    @_locked
    def set_weight(self, uuid: str, weight: int) -> None:
        host = self._require_tunable()
        if not host.weight_range.contains(weight):
            raise InvalidSetting(
                f"weight {weight} is outside [{host.weight_range.low}, "
                f"{host.weight_range.high}] for scheduler {host.scheduler}"
            )
        field = "cpu_shares" if host.scheduler == _POSIX else "weight"
        dom = self._domain(uuid)
        with self._sorted(uuid):
            dom.setSchedulerParameters({field: weight})

    @_locked
    def set_cap(self, uuid: str, cap: int) -> None:
        host = self._require_tunable()
        if not host.supports_cap:
            raise Unsupported(f"scheduler {host.scheduler} on {self.uri} has no cap")
        if not 0 <= cap <= 100 * host.cpus:
            raise InvalidSetting(f"cap {cap} is outside [0, {100 * host.cpus}] (% of one CPU)")
        dom = self._domain(uuid)
        if host.scheduler == _POSIX:
            with self._sorted(uuid):
                period = int(dom.schedulerParameters().get("global_period", 100000)) or 100000
                quota = -1 if cap == 0 else period * cap // 100
                dom.setSchedulerParameters({"global_quota": quota})
            return
        with self._sorted(uuid):
            dom.setSchedulerParameters({"cap": cap})

    # --- pinning ----------------------------------------------------------------------

    @_locked
    def get_pinning(self, uuid: str) -> Pinning:
        """Each vCPU's affinity; none (unknown) where the driver cannot report it: the
        domain is still sampled."""
        dom = self._domain(uuid)
        vcpus = self._known_for(uuid, int(dom.ID()), dom).vcpus
        try:
            with self._sorted(uuid), _c_call():
                return Pinning(vcpu_affinity.pin_info(dom, vcpus, self._cpus().map_size))
        except Unsupported:
            return Pinning(())

    def _cpus(self) -> _Cpus:
        """The host's CPU map (a CPU taken offline leaves a hole in the numbering), or,
        where the driver keeps none (libxl), `_cpus_without_map`."""
        if self._host_cpus is None:
            conn = self._connection()
            try:
                with self._sorted():
                    size, online, _count = conn.getCPUMap()
                cpus = _Cpus(int(size), frozenset(i for i, on in enumerate(online) if on))
            except Unsupported:
                cpus = self._cpus_without_map()
            self._host_cpus = cpus
        return self._host_cpus

    def _cpus_without_map(self) -> _Cpus:
        """Maps of `UNMAPPED_MAP_CPUS`, so no affinity read is cut short (the driver
        copies what the host has: libxl's maps run to Xen's highest CPU ID, offline CPUs
        included), and the online CPUs by ID, holes included (``smt=0`` parks every other
        one): on the dom0 itself from its kernel's list of Xen's CPUs; else the
        capabilities' NUMA topology, read when libvirtd started, if it counts as many as
        the node info says are online. Failing both, the node info's first ``CPU(s)``,
        and dom0 is not pinned: which CPUs those are is a guess."""
        if not urlsplit(self.uri).netloc:
            local = xen_online_cpus()
            if local:
                return _Cpus(UNMAPPED_MAP_CPUS, local)
        conn = self._connection()
        with self._sorted():
            caps = ET.fromstring(conn.getCapabilities())
            active = int(conn.getInfo()[2])
        ids = frozenset(
            int(cpu.get("id", "-1")) for cpu in caps.findall("./host/topology/cells/cell/cpus/cpu")
        )
        if len(ids) == active and all(0 <= i < UNMAPPED_MAP_CPUS for i in ids):
            return _Cpus(UNMAPPED_MAP_CPUS, ids)
        return _Cpus(UNMAPPED_MAP_CPUS, frozenset(range(active)), known=False)

    @_locked
    def set_pinning(self, uuid: str, pinning: Pinning) -> None:
        """Each vCPU's affinity as given. Every CPU named must exist and each vCPU needs
        an online one; offline CPUs may stay in an affinity (originals read back carry
        them), where Xen leaves them until they come online."""
        host = self._cpus()
        size, online = host.map_size, host.online
        for vcpu, cpus in enumerate(pinning.vcpus):
            bad = sorted(c for c in cpus if not 0 <= c < size)
            if bad:
                raise InvalidSetting(
                    f"CPU(s) {bad} do not exist: xvrd's CPU maps hold 0-{size - 1}"
                )
            if not cpus & online:
                raise InvalidSetting(
                    f"vCPU {vcpu} would be pinned to no online CPU (online: "
                    f"{','.join(map(str, sorted(online)))})"
                )
        dom = self._domain(uuid)
        vcpus = self._known_for(uuid, int(dom.ID()), dom).vcpus
        if len(pinning.vcpus) > vcpus:
            # Checked first: the vCPUs before the missing one would be pinned already.
            raise InvalidSetting(
                f"{len(pinning.vcpus)} vCPU affinities given for a domain with {vcpus} vCPUs"
            )
        for vcpu, cpus in enumerate(pinning.vcpus):
            with self._sorted(uuid), _c_call():
                vcpu_affinity.pin_vcpu(dom, vcpu, cpus, size)


@contextlib.contextmanager
def _c_call() -> Iterator[None]:
    """A failed `vcpu_affinity` call raised as libvirt-python would: a ``libvirtError``
    made right after it, which carries the error libvirt recorded for this thread."""
    try:
        yield
    except vcpu_affinity.CallFailed as failed:
        raise libvirt.libvirtError(str(failed)) from None
    except OSError as err:  # the library itself could not be opened
        raise Unsupported(
            f"cannot open {vcpu_affinity.LIBVIRT_SONAME} for vCPU maps: {err}"
        ) from err


def _posix_cap(params: dict[str, Any]) -> int:
    """Whole-domain CFS bandwidth as % of one CPU; no quota (-1, 0, huge) is no cap."""
    quota = int(params.get("global_quota", -1))
    period = int(params.get("global_period", 0))
    if quota <= 0 or period <= 0 or quota >= _CFS_QUOTA_MAX:
        return 0
    return max(1, round(100 * quota / period))


#: The running kernel's boot ID: xvrd runs in dom0, so for a local URI this is the host's.
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def _local_boot_id(uri: str) -> str:
    """The host's boot ID when ``uri`` names this machine (no host part), else "" (unknown:
    originals are then kept across what may have been a reboot)."""
    if urlsplit(uri).netloc:
        return ""
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        return ""
