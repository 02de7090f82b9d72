"""The credit/credit2 mapping, against a stand-in for libvirt's libxl driver.

There is no Xen here. The stand-in answers the calls the backend makes the way libvirt
9.0's libxl driver documents them: Domain-0 listed with ID 0, scheduler 'credit' or
'credit2' with 'weight' and 'cap', getCPUStats giving only cpu_time, vifs named vifN.M.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import import_libvirt, no_cpu_map_error
from pytest_mock import MockerFixture

import_libvirt()

import libvirt  # noqa: E402

from xvrd.backends import libvirt as libvirt_backend  # noqa: E402
from xvrd.backends import vcpu_affinity  # noqa: E402
from xvrd.backends.base import (  # noqa: E402
    XEN_WEIGHT_RANGE,
    InvalidSetting,
    Pinning,
    SchedParams,
    Unsupported,
)
from xvrd.backends.libvirt import (  # noqa: E402
    UNMAPPED_MAP_CPUS,
    LibvirtBackend,
    _posix_cap,
    xen_online_cpus,
)

VIF_XML = "<interface type='bridge'><target dev='{dev}'/></interface>"


@dataclass
class FakeXenDomain:
    domid: int
    dom_name: str
    scheduler: str
    params: dict[str, int] = field(default_factory=lambda: {"weight": 256, "cap": 0})
    pins: list[tuple[bool, ...]] = field(default_factory=lambda: [(True, True)])
    vifs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.domid and not self.vifs:
            self.vifs.append(f"vif{self.domid}.0")

    def ID(self) -> int:  # noqa: N802 - libvirt's names
        return self.domid

    def name(self) -> str:
        return self.dom_name

    def UUIDString(self) -> str:  # noqa: N802
        return f"00000000-0000-0000-0000-{self.domid:012d}"

    def info(self) -> list[int]:
        return [1, 0, 0, len(self.pins), 5_000_000_000 + self.domid]

    def XMLDesc(self, _flags: int) -> str:  # noqa: N802
        devices = "".join(VIF_XML.format(dev=v) for v in self.vifs)
        return f"<domain type='xen'><devices>{devices}</devices></domain>"

    def getCPUStats(self, _total: bool) -> list[dict[str, int]]:  # noqa: N802
        return [{"cpu_time": 7_000_000_000 + self.domid}]

    def interfaceStats(self, dev: str) -> tuple[int, ...]:  # noqa: N802
        if dev not in self.vifs:
            err = libvirt.libvirtError(f"invalid path, '{dev}' is not a known interface")
            err.err = (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_FROM_LIBXL, str(err), 2)
            raise err
        return (1000, 10, 0, 1, 2000, 20, 0, -1)

    def schedulerType(self) -> tuple[str, int]:  # noqa: N802
        return (self.scheduler, len(self.params))

    def schedulerParameters(self) -> dict[str, int]:  # noqa: N802
        return dict(self.params)

    def setSchedulerParameters(self, params: dict[str, int]) -> None:  # noqa: N802
        self.params.update(params)

    # What libxl's virDomainGetVcpus and virDomainPinVcpu do with the domain's maps,
    # reached through `vcpu_affinity` (see _c_calls_on_the_stand_in).
    def pin_info(self, vcpus: int, size: int) -> tuple[frozenset[int], ...]:
        return tuple(
            frozenset(c for c, on in enumerate(row[:size]) if on) for row in self.pins[:vcpus]
        )

    def pin_vcpu(self, vcpu: int, cpus: frozenset[int], size: int) -> None:
        self.pins[vcpu] = tuple(c in cpus for c in range(size))


class FakeXenConnection:
    def __init__(self, scheduler: str) -> None:
        #: The online flag of each CPU the host's map holds; None: the driver keeps no map.
        self.online: list[bool] | None = [True, True]
        #: The CPU IDs the capabilities' NUMA topology lists; None: it lists none.
        self.topology: list[int] | None = None
        self.domains = [
            FakeXenDomain(7, "web", scheduler),
            FakeXenDomain(0, "Domain-0", scheduler, pins=[(True, True), (True, True)]),
            FakeXenDomain(3, "router", scheduler),
        ]

    def getType(self) -> str:  # noqa: N802
        return "Xen"

    def getInfo(self) -> list[Any]:  # noqa: N802
        if self.online is not None:
            online = sum(self.online)
        else:
            online = len(self.topology) if self.topology else 2
        return ["x86_64", 4096, online, 2000, 1, 1, online, 1]

    def getCPUMap(self) -> tuple[int, list[bool], int]:  # noqa: N802
        if self.online is None:
            raise no_cpu_map_error()
        return (len(self.online), list(self.online), sum(self.online))

    def getCapabilities(self) -> str:  # noqa: N802
        cpus = "".join(f"<cpu id='{i}'/>" for i in self.topology or ())
        cells = (
            f"<topology><cells num='1'><cell id='0'><cpus>{cpus}</cpus></cell></cells></topology>"
        )
        return f"<capabilities><host>{cells if self.topology else ''}</host></capabilities>"

    def listAllDomains(self, _flags: int = 0) -> list[FakeXenDomain]:  # noqa: N802
        return list(self.domains)

    def close(self) -> int:
        return 0


@pytest.fixture(autouse=True)
def _c_calls_on_the_stand_in(mocker: MockerFixture) -> None:
    """`vcpu_affinity`'s C calls cannot reach the stand-in: they go to its maps, with the
    map length the backend passes (test_test_driver.py makes the real calls)."""
    mocker.patch.object(
        vcpu_affinity, "pin_info", side_effect=lambda dom, vcpus, size: dom.pin_info(vcpus, size)
    )
    mocker.patch.object(
        vcpu_affinity,
        "pin_vcpu",
        side_effect=lambda dom, vcpu, cpus, size: dom.pin_vcpu(vcpu, cpus, size),
    )


def _backend(scheduler: str) -> tuple[LibvirtBackend, FakeXenConnection]:
    backend = LibvirtBackend("xen:///system", connect=False)
    conn = FakeXenConnection(scheduler)
    backend._conn = conn
    return backend, conn


@pytest.mark.parametrize("scheduler", ["credit", "credit2"])
def test_xen_host_info(scheduler: str) -> None:
    """credit and credit2: Xen's weight range, a cap, dom0 listed so dom0 can be pinned."""
    backend, _ = _backend(scheduler)
    info = backend.info()
    assert (info.scheduler, info.weight_range, info.cpus) == (scheduler, XEN_WEIGHT_RANGE, 2)
    assert info.supports_cap
    assert info.supports_dom0_pinning
    # A local URI: the boot this dom0 kernel is in (originals from another boot are stale).
    assert info.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_remote_host_has_no_boot_id() -> None:
    """Over ssh the local kernel's boot ID is not the host's: unknown, originals kept."""
    backend = LibvirtBackend("xen+ssh://root@xen1/system", connect=False)
    backend._conn = FakeXenConnection("credit")
    assert backend.info().boot_id == ""


def test_domain0_first_then_creation_order() -> None:
    """Domains come out by domain ID, Domain-0 first: the order Xen created them in."""
    backend, _ = _backend("credit")
    listed = backend.list_domains()
    assert [(d.domid, d.name, d.creation_seq) for d in listed] == [
        (0, "Domain-0", 0),
        (3, "router", 1),
        (7, "web", 2),
    ]
    assert listed[0].is_dom0
    assert listed[0].vcpus == 2


def test_counters_pass_through_guest_view_and_missing_counters_read_zero() -> None:
    backend, _ = _backend("credit")
    uuids = {d.name: d.uuid for d in backend.list_domains()}
    router = backend.read_counters(uuids["router"])
    assert router.cpu_ns == 7_000_000_003
    (vif,) = router.vifs
    assert (vif.name, vif.rx_bytes, vif.rx_drops, vif.tx_bytes, vif.tx_drops) == (
        "vif3.0",
        1000,
        1,
        2000,
        0,
    )
    assert backend.read_counters(uuids["Domain-0"]).vifs == ()


def test_weight_and_cap_are_set_with_libxl_names() -> None:
    backend, conn = _backend("credit")
    dom0 = backend.list_domains()[0]
    backend.set_weight(dom0.uuid, 4096)
    backend.set_cap(dom0.uuid, 150)
    assert conn.domains[1].params == {"weight": 4096, "cap": 150}
    assert backend.get_sched(dom0.uuid) == SchedParams(weight=4096, cap=150)


def test_weight_outside_xen_range_is_refused() -> None:
    backend, conn = _backend("credit2")
    uuid = backend.list_domains()[1].uuid
    for weight in (0, 65536):
        with pytest.raises(InvalidSetting, match=r"\[1, 65535\]"):
            backend.set_weight(uuid, weight)
    assert conn.domains[2].params["weight"] == 256


def test_cap_over_the_host_is_refused() -> None:
    backend, _ = _backend("credit")
    with pytest.raises(InvalidSetting, match=r"\[0, 200\]"):
        backend.set_cap(backend.list_domains()[1].uuid, 201)


def test_dom0_pinning_is_set_per_vcpu() -> None:
    backend, conn = _backend("credit")
    dom0 = backend.list_domains()[0]
    backend.set_pinning(dom0.uuid, Pinning((frozenset({0}), frozenset({1}))))
    assert conn.domains[1].pins == [(True, False), (False, True)]
    assert backend.get_pinning(dom0.uuid) == Pinning((frozenset({0}), frozenset({1})))


def test_offline_cpus_are_left_out_and_refused_as_a_vcpus_only_cpus() -> None:
    """CPU 1 offline of 0-3: the host has CPUs 0, 2 and 3; a vCPU may keep CPU 1 in its
    affinity (as the host reports an unpinned one) but not have it alone."""
    backend, conn = _backend("credit")
    conn.online = [True, False, True, True]
    info = backend.info()
    assert (info.cpu_ids, info.cpus) == (frozenset({0, 2, 3}), 3)
    dom0 = backend.list_domains()[0]
    with pytest.raises(InvalidSetting, match=r"vCPU 1 would be pinned to no online CPU.*0,2,3"):
        backend.set_pinning(dom0.uuid, Pinning((frozenset({0}), frozenset({1}))))
    assert conn.domains[1].pins == [(True, True), (True, True)]  # nothing changed
    backend.set_pinning(dom0.uuid, Pinning((frozenset({0, 1}), frozenset({2, 3}))))
    assert conn.domains[1].pins == [(True, True, False, False), (False, False, True, True)]


def test_without_a_cpu_map_the_online_cpus_come_from_the_capabilities(
    mocker: MockerFixture,
) -> None:
    """libxl keeps no CPU map, which libvirt-python sizes every vCPU map with: the online
    CPUs are the capabilities' topology (holes included, as with Xen's smt=0), dom0 can
    still be pinned, and the maps go through `vcpu_affinity`'s C calls at their longest,
    so no affinity read is cut short. Those calls cannot reach this stand-in;
    test_test_driver.py makes them against the test driver."""
    backend, conn = _backend("credit")
    conn.online = None
    conn.topology = [0, 2, 3]
    both = (frozenset({0, 1, 2, 3}), frozenset({0, 1, 2, 3}))
    pin_info = mocker.patch.object(vcpu_affinity, "pin_info", return_value=both)
    pin_vcpu = mocker.patch.object(vcpu_affinity, "pin_vcpu")
    info = backend.info()
    assert info.cpu_ids == frozenset({0, 2, 3})
    assert info.supports_dom0_pinning
    dom0 = backend.list_domains()[0]
    assert backend.get_pinning(dom0.uuid) == Pinning(both)
    pin_info.assert_called_once_with(conn.domains[1], 2, UNMAPPED_MAP_CPUS)
    backend.set_pinning(dom0.uuid, Pinning((frozenset({0}), frozenset({1, 2}))))
    assert pin_vcpu.call_args_list == [
        mocker.call(conn.domains[1], 0, frozenset({0}), UNMAPPED_MAP_CPUS),
        mocker.call(conn.domains[1], 1, frozenset({1, 2}), UNMAPPED_MAP_CPUS),
    ]
    with pytest.raises(InvalidSetting, match="vCPU 1 would be pinned to no online CPU"):
        backend.set_pinning(dom0.uuid, Pinning((frozenset({0}), frozenset({1}))))
    with pytest.raises(InvalidSetting, match=r"\[4096\] do not exist"):
        backend.set_pinning(dom0.uuid, Pinning((frozenset({0}), frozenset({4096}))))
    assert pin_vcpu.call_count == 2


def test_without_a_cpu_map_or_a_topology_the_node_info_counts_the_cpus() -> None:
    """Which CPUs are online is then a guess (the first ones): dom0 is not pinned."""
    backend, conn = _backend("credit")
    conn.online = None
    info = backend.info()
    assert info.cpu_ids == frozenset({0, 1})
    assert not info.supports_dom0_pinning


def test_a_topology_that_counts_other_cpus_than_the_node_info_is_not_trusted(
    mocker: MockerFixture,
) -> None:
    """Capabilities are read when libvirtd starts: a CPU taken offline since is still in
    them, while the node info counts it no more."""
    backend, conn = _backend("credit")
    conn.online = None
    conn.topology = [0, 1, 2, 3]
    mocker.patch.object(conn, "getInfo", return_value=["x86_64", 4096, 3, 2000, 1, 1, 4, 1])
    info = backend.info()
    assert info.cpu_ids == frozenset({0, 1, 2})
    assert not info.supports_dom0_pinning


def test_on_the_dom0_itself_the_online_cpus_are_its_kernels_list_of_xens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/sys/devices/system/xen_cpu: read now, so a CPU taken offline since libvirtd started
    is seen; CPU 0 has no online flag (it cannot go offline). It wins over the topology."""
    for cpu, flag in ((0, None), (1, "0"), (2, "1"), (6, "1")):
        (tmp_path / f"xen_cpu{cpu}").mkdir()
        if flag is not None:
            (tmp_path / f"xen_cpu{cpu}" / "online").write_text(flag + "\n")
    (tmp_path / "power").mkdir()
    assert xen_online_cpus(tmp_path) == frozenset({0, 2, 6})
    assert xen_online_cpus(tmp_path / "absent") is None
    monkeypatch.setattr(libvirt_backend, "XEN_CPU_SYSFS", tmp_path)
    backend, conn = _backend("credit")
    conn.online = None
    conn.topology = [0, 1, 2, 3]
    info = backend.info()
    assert info.cpu_ids == frozenset({0, 2, 6})
    assert info.supports_dom0_pinning


def test_without_libvirts_c_library_pinning_is_unsupported(mocker: MockerFixture) -> None:
    """libvirt.so.0 not loadable (an unusual install): pinning reads as unknown and setting
    it is Unsupported, saying why; sampling goes on."""
    backend, conn = _backend("credit")
    conn.online = None
    missing = OSError("libvirt.so.0: cannot open shared object file")
    mocker.patch.object(vcpu_affinity, "pin_info", side_effect=missing)
    mocker.patch.object(vcpu_affinity, "pin_vcpu", side_effect=missing)
    backend.info()
    dom0 = backend.list_domains()[0]
    assert backend.get_pinning(dom0.uuid) == Pinning(())
    with pytest.raises(Unsupported, match=r"cannot open libvirt\.so\.0 for vCPU maps"):
        backend.set_pinning(dom0.uuid, Pinning((frozenset({0}), frozenset({1}))))


def test_other_xen_schedulers_are_unsupported() -> None:
    backend, _ = _backend("rtds")
    with pytest.raises(Unsupported, match="'rtds'"):
        backend.info()


@pytest.mark.parametrize(
    ("quota", "period", "cap"),
    [
        (-1, 100000, 0),
        (0, 100000, 0),
        (50000, 100000, 50),
        (250000, 100000, 250),
        (17592186044415, 1000000, 0),
    ],
)
def test_posix_global_quota_as_cap(quota: int, period: int, cap: int) -> None:
    """The whole-domain CFS quota as % of one CPU; no quota is no cap."""
    assert _posix_cap({"global_quota": quota, "global_period": period}) == cap


def test_unplugged_vif_is_dropped_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vif gone since the XML was read: the XML is read again, the other vifs still count."""
    backend, conn = _backend("credit")
    router = conn.domains[2]
    router.vifs.append("vif3.1")
    uuid = backend.list_domains()[1].uuid
    assert [v.name for v in backend.read_counters(uuid).vifs] == ["vif3.0", "vif3.1"]
    router.vifs.remove("vif3.0")
    assert [v.name for v in backend.read_counters(uuid).vifs] == ["vif3.1"]


def test_hotplugged_vif_is_seen_once_the_xml_is_old(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new vif shows up when the cached XML is older than VIF_REFRESH_S."""
    import xvrd.backends.libvirt as backend_module

    backend, conn = _backend("credit")
    uuid = backend.list_domains()[1].uuid
    conn.domains[2].vifs.append("vif3.1")
    backend.list_domains()
    assert [v.name for v in backend.read_counters(uuid).vifs] == ["vif3.0"]
    monkeypatch.setattr(backend_module, "VIF_REFRESH_S", -1.0)
    backend.list_domains()
    assert [v.name for v in backend.read_counters(uuid).vifs] == ["vif3.0", "vif3.1"]


def _internal_error(message: str) -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_LIBXL, message, 2)
    return err


def test_a_domain_libxl_cannot_read_does_not_stop_the_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A domU being torn down ("libxl_domain_info failed"): listed from what was read of it
    before when the XML is re-read, left out when never read; the others are listed."""
    import xvrd.backends.libvirt as backend_module

    backend, conn = _backend("credit")
    assert [d.name for d in backend.list_domains()] == ["Domain-0", "router", "web"]
    router = conn.domains[2]

    def dying(*_args: object) -> object:
        raise _internal_error("libxl_domain_info failed")

    monkeypatch.setattr(router, "info", dying)
    monkeypatch.setattr(backend_module, "VIF_REFRESH_S", -1.0)  # every listing re-reads
    assert [d.name for d in backend.list_domains()] == ["Domain-0", "router", "web"]
    conn.domains.append(FakeXenDomain(9, "new", "credit"))
    monkeypatch.setattr(conn.domains[3], "info", dying)
    assert [d.name for d in backend.list_domains()] == ["Domain-0", "router", "web"]


def test_a_failed_cpu_reading_is_an_error_not_another_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getCPUStats failing once (not unsupported) fails this reading: falling back to
    info()'s counter for one reading would make a rate of two different counters."""
    from xvrd.backends.base import BackendError

    backend, conn = _backend("credit")
    uuid = backend.list_domains()[1].uuid

    def busy(_total: bool) -> object:
        raise _internal_error("cannot acquire state change lock")

    monkeypatch.setattr(conn.domains[2], "getCPUStats", busy)
    with pytest.raises(BackendError, match="state change lock"):
        backend.read_counters(uuid)


def test_a_vif_read_error_other_than_unplugged_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only "not a known interface" re-reads the XML and tries again; a lock timeout would
    just be waited for twice."""
    from xvrd.backends.base import BackendError

    backend, conn = _backend("credit")
    uuid = backend.list_domains()[1].uuid
    calls: list[str] = []

    def locked(dev: str) -> object:
        calls.append(dev)
        raise _internal_error("cannot acquire state change lock (held by query)")

    monkeypatch.setattr(conn.domains[2], "interfaceStats", locked)
    with pytest.raises(BackendError, match="state change lock"):
        backend.read_counters(uuid)
    assert calls == ["vif3.0"]
