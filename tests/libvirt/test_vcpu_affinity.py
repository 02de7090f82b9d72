"""vCPU maps through libvirt's C calls: what libxl's answers look like, which no driver
here gives (test_test_driver.py makes the real calls against the test driver)."""

from __future__ import annotations

from typing import Any

from pytest_mock import MockerFixture

from xvrd.backends import vcpu_affinity


def test_libxls_zeroed_entries_past_the_vcpus_are_not_vcpus_pinned_to_nothing(
    mocker: MockerFixture,
) -> None:
    """libxl's virDomainGetVcpus answers as many entries as asked for and zeroes those past
    the domain's vCPUs (libxl_driver.c): a stale, larger vCPU count must not read as vCPUs
    with no CPU, which a restore would then refuse to set."""

    def get_vcpus(_dom: Any, _info: Any, maxinfo: int, cpumaps: Any, maplen: int) -> int:
        cpumaps[0] = 0b101  # vCPU 0 on CPUs 0 and 2
        cpumaps[maplen + 1] = 0b1  # vCPU 1 on CPU 8
        return maxinfo

    libvirt = mocker.Mock()
    libvirt.virDomainGetVcpus.side_effect = get_vcpus
    mocker.patch.object(vcpu_affinity, "_libvirt", return_value=libvirt)
    dom = mocker.Mock()
    dom.c_pointer.return_value = 0
    assert vcpu_affinity.pin_info(dom, 4, 16) == (frozenset({0, 2}), frozenset({8}))


def test_a_map_sets_each_cpus_bit_lowest_first(mocker: MockerFixture) -> None:
    """libvirt's VIR_USE_CPU: CPU n is bit n % 8 of byte n / 8."""
    seen: list[bytes] = []

    def pin(_dom: Any, _vcpu: int, cpumap: Any, maplen: int) -> int:
        seen.append(bytes(cpumap[:maplen]))
        return 0

    libvirt = mocker.Mock()
    libvirt.virDomainPinVcpu.side_effect = pin
    mocker.patch.object(vcpu_affinity, "_libvirt", return_value=libvirt)
    dom = mocker.Mock()
    dom.c_pointer.return_value = 0
    vcpu_affinity.pin_vcpu(dom, 0, frozenset({0, 2, 9, 17}), 24)
    assert seen == [bytes([0b101, 0b10, 0b10])]
