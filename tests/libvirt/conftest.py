"""Fixtures for the libvirt tests: a private libvirtd, the test driver, tiny QEMU/TCG guests.

Fixture names the other test modules use:

- ``libvirt_tools``  fails (CI) or skips (elsewhere) when libvirtd, qemu or busybox are missing
- ``libvirtd``       a session-wide `harness.Libvirtd` (private socket, SIGTERM at the end);
                     concurrent runs on one host wait for each other (`harness.exclusive_host`)
- ``test_uri``       the test driver through that libvirtd, its state held by a connection
- ``qemu_uri``       the QEMU driver through that libvirtd
- ``guests``         two running TCG guests, each with one ``ethernet`` vif (``vif1.0``...)

The guest kernel copy and initramfs are cached in ``$XVRD_GUEST_CACHE`` (default
``/var/cache/xvrd/test-guests``, readable by the libvirt-qemu user), so only the first run
builds them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import pytest

GUEST_NAMES = ("xvrd-test-g1", "xvrd-test-g2")


def _cache_dir() -> Path:
    env = os.environ.get("XVRD_GUEST_CACHE")
    # Not under /root: QEMU runs as libvirt-qemu and must reach the files.
    return Path(env) if env else Path("/var/cache/xvrd/test-guests")


def missing_or_fail(what: str) -> None:
    """In CI a missing prerequisite is a failure; on a developer's machine a skip."""
    message = f"{what}; run scripts/install-system-deps as root (make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


def import_libvirt() -> Any:
    """The libvirt binding, or a failure (CI) / skip (elsewhere) saying how to get it."""
    try:
        import libvirt
    except ImportError:
        missing_or_fail("libvirt-python is not installed (the `libvirt` extra)")
    return libvirt


def no_cpu_map_error() -> Any:
    """What libvirt raises where the driver does not implement virNodeGetCPUMap (libxl);
    libvirt-python's vCPU calls size their maps with it, so they raise it too."""
    libvirt = import_libvirt()
    err = libvirt.libvirtError("this function is not supported by the connection driver")
    err.err = (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_FROM_LIBXL, str(err), 2)
    return err


@pytest.fixture(scope="session")
def libvirt_tools() -> None:
    import_libvirt()
    missing = harness.missing_tools()
    if missing:
        missing_or_fail(f"libvirt tests need {', '.join(missing)}")
    if os.geteuid() != 0:
        missing_or_fail("libvirt tests start a privileged libvirtd and need root")


@pytest.fixture(scope="session")
def libvirtd(libvirt_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    harness.ensure_host_state()
    run_dir = tmp_path_factory.mktemp("libvirtd")
    run_dir.chmod(0o755)
    daemon = harness.Libvirtd(run_dir)
    with harness.exclusive_host(), harness.virtlogd(run_dir):
        daemon.start()
        try:
            yield daemon
        finally:
            _destroy_leftovers(daemon)
            daemon.stop()


def _destroy_leftovers(daemon: harness.Libvirtd) -> None:
    import libvirt

    if daemon.process is None:
        return
    with contextlib.suppress(libvirt.libvirtError):
        conn = libvirt.open(daemon.uri())
        for dom in conn.listAllDomains():
            if dom.name() in GUEST_NAMES and dom.isActive():
                dom.destroy()
        conn.close()


@pytest.fixture(scope="module")
def test_uri(libvirtd: harness.Libvirtd) -> Iterator[str]:
    """The test driver through libvirtd; its state lives while a client is connected."""
    import libvirt

    uri = libvirtd.uri("test", "/default")
    holder = libvirt.open(uri)
    try:
        yield uri
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            holder.close()


@pytest.fixture(scope="session")
def qemu_uri(libvirtd: harness.Libvirtd) -> str:
    return libvirtd.uri("qemu", "/system")


@dataclass(frozen=True)
class Guest:
    name: str
    uuid: str
    vif: str


@pytest.fixture(scope="session")
def guests(libvirtd: harness.Libvirtd, qemu_uri: str) -> Iterator[list[Guest]]:
    """Two one-vCPU TCG guests with vifs vif1.0 and vif2.0 (destroyed at the end)."""
    import libvirt

    image = harness.build_guest_image(_cache_dir())
    conn = libvirt.open(qemu_uri)
    for dom in conn.listAllDomains():
        if dom.name() in GUEST_NAMES and dom.isActive():
            dom.destroy()
    out = []
    for index, name in enumerate(GUEST_NAMES, start=1):
        vif = f"vif{index}.0"
        dom = conn.createXML(harness.guest_xml(name, image, vif), 0)
        out.append(Guest(name=name, uuid=dom.UUIDString(), vif=vif))
    conn.close()
    try:
        yield out
    finally:
        _destroy_leftovers(libvirtd)
