"""vCPU affinity through libvirt's C API, with maps as long as the caller says.

libvirt-python sizes every vCPU map (``vcpuPinInfo``, ``pinVcpu``) with
``virNodeGetCPUMap``, a choice compiled into it. libvirt's libxl driver does not implement
that call (Debian 12's 9.0 does not), so through libvirt-python alone dom0 could not be
pinned on a Xen host. The C calls underneath take the map's length from the caller, as
virsh does (from the node info where the driver has no CPU map): this module makes the
two calls with ctypes on the handle libvirt-python holds, on the same connection, so
libvirt keeps track of the affinity it set. The backend uses it on every driver: one
path, and a reading costs one call where libvirt-python makes three (domain info, CPU
map, vCPU info).

The affinity is read with ``virDomainGetVcpus``, the running vCPUs' own, not with
``virDomainGetVcpuPinInfo``: libxl answers that one from libvirt's definition of the
domain, which for Domain-0 says "every CPU" whatever Xen does (``dom0_vcpus_pin`` at
boot, ``xl vcpu-pin``), and xvrd must see, and put back, what is really there.

A failed call raises `CallFailed`; libvirt recorded why for this thread, and the backend
(the one module that imports the binding) turns it into a ``libvirtError`` as
libvirt-python does.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

#: libvirt's stable ABI name; libvirt-python's own module is linked against it, so this
#: opens the library already loaded, with its per-thread last error shared.
LIBVIRT_SONAME = "libvirt.so.0"


class CallFailed(Exception):
    """A libvirt C call returned -1; the reason is libvirt's last error in this thread."""


class _VcpuInfo(ctypes.Structure):
    """libvirt's virVcpuInfo."""

    _fields_ = (
        ("number", ctypes.c_uint),
        ("state", ctypes.c_int),
        ("cpu_time", ctypes.c_ulonglong),
        ("cpu", ctypes.c_int),
    )


@functools.cache
def _libvirt() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBVIRT_SONAME)
    # int virDomainGetVcpus(virDomainPtr, virVcpuInfoPtr info, int maxinfo,
    #                       unsigned char *cpumaps, int maplen)
    lib.virDomainGetVcpus.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(_VcpuInfo),
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_ubyte),
        ctypes.c_int,
    ]
    lib.virDomainGetVcpus.restype = ctypes.c_int
    # int virDomainPinVcpu(virDomainPtr, unsigned int vcpu, unsigned char *cpumap, int maplen)
    lib.virDomainPinVcpu.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_ubyte),
        ctypes.c_int,
    ]
    lib.virDomainPinVcpu.restype = ctypes.c_int
    return lib


def map_length(cpus: int) -> int:
    """Bytes in one vCPU's map of ``cpus`` CPUs (libvirt's VIR_CPU_MAPLEN)."""
    return (cpus + 7) // 8


def _handle(dom: Any) -> ctypes.c_void_p:
    return ctypes.c_void_p(int(dom.c_pointer()))


def pin_info(dom: Any, vcpus: int, cpus: int) -> tuple[frozenset[int], ...]:
    """The affinity of each of a running domain's vCPUs (up to ``vcpus`` of them) among
    CPUs ``0..cpus-1``, as they run now."""
    maplen = map_length(cpus)
    count = max(vcpus, 1)
    info = (_VcpuInfo * count)()
    buffer = (ctypes.c_ubyte * (count * maplen))()
    got = _libvirt().virDomainGetVcpus(_handle(dom), info, count, buffer, maplen)
    if got < 0:
        raise CallFailed("virDomainGetVcpus() failed")
    raw = bytes(buffer)
    maps = [
        _cpus(raw[vcpu * maplen : (vcpu + 1) * maplen], cpus) for vcpu in range(min(got, vcpus))
    ]
    # libxl answers as many entries as asked for, zeroed past the vCPUs the domain has; a
    # vCPU that exists always has a CPU to run on.
    while maps and not maps[-1]:
        maps.pop()
    return tuple(maps)


def _cpus(cpumap: bytes, cpus: int) -> frozenset[int]:
    """The CPUs below ``cpus`` set in one map, byte by byte: a map of 4096 CPUs is mostly
    zero bytes."""
    return frozenset(
        base + bit
        for base, byte in ((i * 8, b) for i, b in enumerate(cpumap) if b)
        for bit in range(8)
        if byte >> bit & 1 and base + bit < cpus
    )


def pin_vcpu(dom: Any, vcpu: int, affinity: frozenset[int], cpus: int) -> None:
    """Set one vCPU's affinity to ``affinity``, a map of ``cpus`` CPUs (all must be below)."""
    maplen = map_length(cpus)
    cpumap = (ctypes.c_ubyte * maplen)()
    for cpu in affinity:
        cpumap[cpu // 8] |= 1 << (cpu % 8)
    if _libvirt().virDomainPinVcpu(_handle(dom), vcpu, cpumap, maplen) < 0:
        raise CallFailed("virDomainPinVcpu() failed")
