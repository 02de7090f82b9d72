"""The backend against real QEMU/TCG guests under the fixture's libvirtd.

The restart test stops and starts libvirtd; it is last in this module so the others share
one daemon. The guests survive the restart (QEMU processes outlive libvirtd).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import psutil
import pytest
from conftest import Guest, import_libvirt
from virsh import schedinfo, vcpupin

import_libvirt()

from xvrd.backends.base import BackendUnavailable, InvalidSetting, Pinning  # noqa: E402
from xvrd.backends.libvirt import LibvirtBackend  # noqa: E402

pytestmark = pytest.mark.libvirt


@pytest.fixture
def backend(qemu_uri: str, guests: list[Guest]) -> Iterator[LibvirtBackend]:
    b = LibvirtBackend(qemu_uri)
    yield b
    b.close()


def test_guests_are_listed_in_creation_order(backend: LibvirtBackend, guests: list[Guest]) -> None:
    """Both guests are listed, ordered by domain ID, with one vCPU each."""
    listed = [d for d in backend.list_domains() if d.name.startswith("xvrd-test-")]
    assert [d.uuid for d in listed] == [g.uuid for g in guests]
    assert [d.vcpus for d in listed] == [1, 1]
    assert listed[0].creation_seq < listed[1].creation_seq


def test_info_reports_posix_with_cgroup_shares_range(backend: LibvirtBackend) -> None:
    """QEMU's scheduler is posix; the weight is cpu_shares, the cap its global quota."""
    info = backend.info()
    assert info.scheduler == "posix"
    assert info.supports_cap
    assert not info.supports_dom0_pinning
    assert info.weight_range.low >= 1
    assert info.weight_range.high in (10000, 262144)


def test_weight_set_is_read_back_by_virsh_schedinfo(
    backend: LibvirtBackend, qemu_uri: str, guests: list[Guest]
) -> None:
    """set_weight writes cpu_shares; `virsh schedinfo` in another process reads it back."""
    guest = guests[0]
    original = backend.get_sched(guest.uuid)
    try:
        backend.set_weight(guest.uuid, 2048)
        assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == "2048"
        assert backend.get_sched(guest.uuid).weight == 2048
        assert schedinfo(qemu_uri, guests[1].name)["cpu_shares"] == str(original.weight)
    finally:
        backend.set_weight(guest.uuid, original.weight)
    assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == str(original.weight)


def test_weight_out_of_range_is_refused_and_nothing_changes(
    backend: LibvirtBackend, qemu_uri: str, guests: list[Guest]
) -> None:
    guest = guests[0]
    before = schedinfo(qemu_uri, guest.name)["cpu_shares"]
    high = backend.info().weight_range.high
    with pytest.raises(InvalidSetting, match=r"outside \["):
        backend.set_weight(guest.uuid, high + 1)
    assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == before


def test_cap_maps_to_the_whole_domain_quota(
    backend: LibvirtBackend, qemu_uri: str, guests: list[Guest]
) -> None:
    """A cap of 50 % is half of global_period as global_quota; cap 0 removes it."""
    guest = guests[1]
    try:
        backend.set_cap(guest.uuid, 50)
        seen = schedinfo(qemu_uri, guest.name)
        assert int(seen["global_quota"]) * 2 == int(seen["global_period"])
        assert backend.get_sched(guest.uuid).cap == 50
    finally:
        backend.set_cap(guest.uuid, 0)
    assert backend.get_sched(guest.uuid).cap == 0
    assert int(schedinfo(qemu_uri, guest.name)["global_quota"]) <= 0


def test_pinning_is_read_back_by_virsh(
    backend: LibvirtBackend, qemu_uri: str, guests: list[Guest]
) -> None:
    """pinVcpu through the backend is what `virsh vcpupin` reports."""
    guest = guests[0]
    original = backend.get_pinning(guest.uuid)
    try:
        backend.set_pinning(guest.uuid, Pinning((frozenset({0}),)))
        assert vcpupin(qemu_uri, guest.name) == {0: frozenset({0})}
    finally:
        backend.set_pinning(guest.uuid, original)
    assert vcpupin(qemu_uri, guest.name) == {0: original.vcpus[0]}


def _vcpu_thread(guest: Guest) -> int:
    """The thread ID of a guest's vCPU 0, found from its QEMU process."""
    for proc in psutil.process_iter(["cmdline"]):
        if f"guest={guest.name}," in " ".join(proc.info["cmdline"] or ()):
            for thread in proc.threads():
                comm = Path(f"/proc/{proc.pid}/task/{thread.id}/comm").read_text().strip()
                if comm.endswith("/TCG"):  # "CPU 0/TCG" (or "ALL CPUs/TCG" without MTTCG)
                    return thread.id
    raise AssertionError(f"no vCPU thread found for {guest.name}")


def test_pinning_read_is_the_running_vcpus_not_libvirts_record(
    backend: LibvirtBackend, qemu_uri: str, guests: list[Guest]
) -> None:
    """An affinity set behind libvirt's back (as Xen's dom0_vcpus_pin or `xl vcpu-pin` set
    dom0's, which libxl's pin info never sees) is what the backend reads, so it is also
    what it would put back; libvirt's own record (`virsh vcpupin`) still says otherwise."""
    guest = guests[0]
    tid = _vcpu_thread(guest)
    before = os.sched_getaffinity(tid)
    recorded = vcpupin(qemu_uri, guest.name)
    try:
        os.sched_setaffinity(tid, {1})
        assert backend.get_pinning(guest.uuid) == Pinning((frozenset({1}),))
        assert vcpupin(qemu_uri, guest.name) == recorded
    finally:
        os.sched_setaffinity(tid, before)


def test_cpu_time_is_real_and_grows(backend: LibvirtBackend, guests: list[Guest]) -> None:
    """getCPUStats total: a booted TCG guest has used CPU, and the count does not go back."""
    first = backend.read_counters(guests[0].uuid).cpu_ns
    time.sleep(0.3)
    second = backend.read_counters(guests[0].uuid).cpu_ns
    assert first > 10_000_000
    assert second >= first


def test_frames_sent_to_a_guest_are_its_receive(
    backend: LibvirtBackend, guests: list[Guest]
) -> None:
    """Frames written to the host side of vif1.0 count as guest 1's rx, not guest 2's."""
    target, other = guests
    _wait_for_guest_nic(backend, target)
    before = {g.uuid: backend.read_counters(g.uuid).vifs[0] for g in guests}
    sent = harness.send_frames(target.vif, count=300, size=1000)
    time.sleep(0.3)
    after = {g.uuid: backend.read_counters(g.uuid).vifs[0] for g in guests}
    got = after[target.uuid]
    delivered = (got.rx_packets - before[target.uuid].rx_packets) + (
        got.rx_drops - before[target.uuid].rx_drops
    )
    assert got.name == target.vif
    assert delivered >= 300
    assert got.rx_bytes - before[target.uuid].rx_bytes >= sent * 0.9
    assert after[target.uuid].tx_bytes - before[target.uuid].tx_bytes < sent / 10
    assert after[other.uuid].rx_bytes - before[other.uuid].rx_bytes < sent / 10


def _wait_for_guest_nic(backend: LibvirtBackend, guest: Guest, timeout_s: float = 60) -> None:
    """A guest's NIC takes frames once its initramfs has brought eth0 up (a few s of TCG)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = backend.read_counters(guest.uuid).vifs[0].rx_packets
        harness.send_frames(guest.vif, count=5, size=100)
        time.sleep(0.2)
        if backend.read_counters(guest.uuid).vifs[0].rx_packets >= before + 5:
            return
        time.sleep(0.5)
    pytest.fail(f"{guest.name} did not take frames on {guest.vif} within {timeout_s} s")


def test_libvirtd_restart_raises_unavailable_then_reconnects(
    libvirtd: harness.Libvirtd, qemu_uri: str, guests: list[Guest]
) -> None:
    """libvirtd stopped: BackendUnavailable, reconnect fails; restarted: back, same guests."""
    backend = LibvirtBackend(qemu_uri)
    try:
        uuids = {d.uuid for d in backend.list_domains()}
        libvirtd.stop()
        with pytest.raises(BackendUnavailable):
            backend.list_domains()
        assert not backend.connected
        with pytest.raises(BackendUnavailable):
            backend.read_counters(guests[0].uuid)
        with pytest.raises(BackendUnavailable):
            backend.reconnect()
        libvirtd.start()
        deadline = time.monotonic() + 10.0
        while True:
            try:
                backend.reconnect()
                break
            except BackendUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert {d.uuid for d in backend.list_domains()} == uuids
        assert backend.read_counters(guests[0].uuid).cpu_ns > 0
    finally:
        backend.close()
