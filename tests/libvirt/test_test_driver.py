"""The backend against libvirt's test driver, in-process and through a private libvirtd."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from conftest import import_libvirt, no_cpu_map_error
from pytest_mock import MockerFixture
from virsh import vcpupin

import_libvirt()

from xvrd.backends.base import Backend, DomainGone, InvalidSetting, Pinning, Unsupported  # noqa: E402
from xvrd.backends.libvirt import LibvirtBackend  # noqa: E402

pytestmark = pytest.mark.libvirt

IN_PROCESS = "test:///default"


@pytest.fixture(params=["in-process", "libvirtd"])
def backend(request: pytest.FixtureRequest) -> Iterator[LibvirtBackend]:
    """The same checks run against test:///default in-process and through libvirtd."""
    uri = IN_PROCESS if request.param == "in-process" else request.getfixturevalue("test_uri")
    b = LibvirtBackend(uri)
    yield b
    b.close()


def test_is_a_backend(backend: LibvirtBackend) -> None:
    """LibvirtBackend satisfies the Backend Protocol."""
    assert isinstance(backend, Backend)


def test_lists_the_running_domain(backend: LibvirtBackend) -> None:
    """The test driver's one running domain is listed with its ID, name and vCPUs."""
    domains = backend.list_domains()
    assert [(d.domid, d.name, d.vcpus, d.creation_seq) for d in domains] == [(1, "test", 2, 0)]
    assert not domains[0].is_dom0


def test_reads_cpu_time_and_vif_counters(backend: LibvirtBackend) -> None:
    """CPU time and the vif named in the XML (testnet0) are read, and do not go backwards."""
    uuid = backend.list_domains()[0].uuid
    first = backend.read_counters(uuid)
    second = backend.read_counters(uuid)
    assert first.cpu_ns > 0
    assert [v.name for v in first.vifs] == ["testnet0"]
    assert second.vifs[0].rx_bytes >= first.vifs[0].rx_bytes > 0
    assert second.vifs[0].tx_packets >= first.vifs[0].tx_packets > 0


def test_unknown_domain_is_gone(backend: LibvirtBackend) -> None:
    """A UUID no domain has raises DomainGone, not a generic error."""
    with pytest.raises(DomainGone):
        backend.read_counters("00000000-0000-0000-0000-0000000000aa")


def test_untunable_scheduler_is_unsupported_with_a_clear_message(backend: LibvirtBackend) -> None:
    """The test driver's 'fair' scheduler has no usable weight: info and setters say so."""
    uuid = backend.list_domains()[0].uuid
    with pytest.raises(Unsupported, match=r"scheduler 'fair'.*cpu_shares"):
        backend.info()
    for call in (
        lambda: backend.get_sched(uuid),
        lambda: backend.set_weight(uuid, 512),
        lambda: backend.set_cap(uuid, 50),
    ):
        with pytest.raises(Unsupported, match="fair"):
            call()


def test_pinning_out_of_range_is_refused_and_nothing_changes(backend: LibvirtBackend) -> None:
    """A CPU the host lacks is InvalidSetting and leaves the pinning as it was."""
    uuid = backend.list_domains()[0].uuid
    before = backend.get_pinning(uuid)
    with pytest.raises(InvalidSetting, match="do not exist"):
        backend.set_pinning(uuid, Pinning((frozenset({0}), frozenset({4096}))))
    with pytest.raises(InvalidSetting, match="no online CPU"):
        backend.set_pinning(uuid, Pinning((frozenset(),)))
    assert backend.get_pinning(uuid) == before


def test_a_vcpu_is_not_pinned_to_offline_cpus_alone(backend: LibvirtBackend) -> None:
    """The test driver's host has CPUs 0-7 with 0, 2 and 4 online: a vCPU left with only
    offline CPUs is refused, naming the online ones, and nothing changes."""
    uuid = backend.list_domains()[0].uuid
    before = backend.get_pinning(uuid)
    with pytest.raises(InvalidSetting, match=r"vCPU 1 would be pinned to no online CPU.*0,2,4"):
        backend.set_pinning(uuid, Pinning((frozenset({0}), frozenset({1, 3}))))
    assert backend.get_pinning(uuid) == before


def test_pinning_set_is_read_back_by_virsh(test_uri: str) -> None:
    """Pinning set through the backend is what `virsh vcpupin` sees from another process."""
    backend = LibvirtBackend(test_uri)
    try:
        uuid = backend.list_domains()[0].uuid
        backend.set_pinning(uuid, Pinning((frozenset({2}), frozenset({0, 3, 4}))))
        assert vcpupin(test_uri, "test") == {0: frozenset({2}), 1: frozenset({0, 3, 4})}
        assert backend.get_pinning(uuid) == Pinning((frozenset({2}), frozenset({0, 3, 4})))
    finally:
        backend.close()


def test_without_a_cpu_map_vcpus_are_pinned_through_the_c_calls(
    backend: LibvirtBackend, mocker: MockerFixture
) -> None:
    """A driver without virNodeGetCPUMap (libxl): the backend reads and sets affinities
    through libvirt's C calls with maps of 4096 CPUs, takes the online CPUs from the
    capabilities (16 on the test driver's host, whose CPU map has 8), and libvirt holds
    what was set."""
    conn = backend._connection()
    uuid = backend.list_domains()[0].uuid
    dom = conn.lookupByUUIDString(uuid)
    rows = dom.vcpuPinInfo(0)  # libvirt-python's own view, to put back
    mocker.patch.object(conn, "getCPUMap", side_effect=no_cpu_map_error())
    try:
        backend.set_pinning(uuid, Pinning((frozenset({4}), frozenset({0, 2}))))
        assert dom.vcpuPinInfo(0) == [
            tuple(c == 4 for c in range(8)),
            tuple(c in (0, 2) for c in range(8)),
        ]
        assert backend.get_pinning(uuid) == Pinning((frozenset({4}), frozenset({0, 2})))
        with pytest.raises(InvalidSetting, match="vCPU 0 would be pinned to no online CPU"):
            backend.set_pinning(uuid, Pinning((frozenset({16}), frozenset({0}))))
        with pytest.raises(InvalidSetting, match=r"CPU\(s\) \[4096\] do not exist"):
            backend.set_pinning(uuid, Pinning((frozenset({4096}), frozenset({0}))))
        with pytest.raises(InvalidSetting, match="3 vCPU affinities given for a domain with 2"):
            backend.set_pinning(uuid, Pinning((frozenset({1}),) * 3))
        assert backend.get_pinning(uuid).vcpus[1] == frozenset({0, 2})
        # A vCPU unplugged since the count was read: libvirt's refusal of the C call is
        # sorted like any libvirt-python error, with libvirt's own message.
        backend._known[uuid] = replace(backend._known[uuid], vcpus=3)
        with pytest.raises(InvalidSetting, match="vcpu '2' is not present"):
            backend.set_pinning(uuid, Pinning((frozenset({1}),) * 3))
    finally:
        for vcpu, row in enumerate(rows):
            dom.pinVcpu(vcpu, row)


def _extra_domain_xml(name: str) -> str:
    return f"""<domain type='test'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>
      <os><type>hvm</type></os>
      <devices><interface type='ethernet'><target dev='vif9.0'/></interface></devices>
    </domain>"""


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "defined"])
def test_domain_stopped_after_listing_is_gone(test_uri: str, persistent: bool) -> None:
    """A domain destroyed between listing and reading raises DomainGone and drops out."""
    import libvirt

    other = libvirt.open(test_uri)
    name = f"short-lived-{'defined' if persistent else 'transient'}"
    if persistent:
        dom = other.defineXML(_extra_domain_xml(name))
        dom.create()
    else:
        dom = other.createXML(_extra_domain_xml(name), 0)
    backend = LibvirtBackend(test_uri)
    try:
        listed = {d.name: d.uuid for d in backend.list_domains()}
        uuid = listed[name]
        assert [v.name for v in backend.read_counters(uuid).vifs] == ["vif9.0"]
        dom.destroy()
        with pytest.raises(DomainGone):
            backend.read_counters(uuid)
        with pytest.raises(DomainGone):
            backend.get_pinning(uuid)
        assert name not in {d.name for d in backend.list_domains()}
    finally:
        backend.close()
        if persistent:
            dom.undefine()
        other.close()
