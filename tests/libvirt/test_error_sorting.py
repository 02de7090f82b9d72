"""libvirt errors sorted into the backend's typed errors; vif names from domain XML."""

from __future__ import annotations

import pytest
from conftest import import_libvirt

libvirt = import_libvirt()

from xvrd.backends.base import (  # noqa: E402
    BackendError,
    BackendUnavailable,
    DomainGone,
    InvalidSetting,
    Unsupported,
)
from xvrd.backends.libvirt import (  # noqa: E402
    LibvirtBackend,
    sort_libvirt_error,
    vif_names,
)


def _error(code: int, origin: int, message: str) -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (code, origin, message, 2, None, None, None, 0, 0)
    return err


@pytest.mark.parametrize(
    ("code", "origin", "message", "expected"),
    [
        (
            libvirt.VIR_ERR_SYSTEM_ERROR,
            libvirt.VIR_FROM_RPC,
            "Cannot write data",
            BackendUnavailable,
        ),
        (
            libvirt.VIR_ERR_INTERNAL_ERROR,
            libvirt.VIR_FROM_RPC,
            "client socket is closed",
            BackendUnavailable,
        ),
        (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_FROM_NONE, "no connection", BackendUnavailable),
        (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_FROM_QEMU, "Domain not found", DomainGone),
        (
            libvirt.VIR_ERR_OPERATION_INVALID,
            libvirt.VIR_FROM_QEMU,
            "domain is not running",
            DomainGone,
        ),
        (
            libvirt.VIR_ERR_INTERNAL_ERROR,
            libvirt.VIR_FROM_LIBXL,
            "Only 'credit' and 'credit2' schedulers are supported",
            Unsupported,
        ),
        (
            libvirt.VIR_ERR_INTERNAL_ERROR,
            libvirt.VIR_FROM_LIBXL,
            "Only 'credit' scheduler is supported",  # libvirt before credit2 support
            Unsupported,
        ),
        (
            libvirt.VIR_ERR_OPERATION_INVALID,
            libvirt.VIR_FROM_LIBXL,
            "Domain-0 does not support requested operation",
            Unsupported,
        ),
        (
            libvirt.VIR_ERR_NO_SUPPORT,
            libvirt.VIR_FROM_TEST,
            "this function is not supported",
            Unsupported,
        ),
        (libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_FROM_QEMU, "unsupported", Unsupported),
        (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_FROM_QEMU, "value out of range", InvalidSetting),
    ],
)
def test_errors_are_sorted(code: int, origin: int, message: str, expected: type) -> None:
    """Each libvirt error lands in exactly the typed error the daemon acts on."""
    assert type(sort_libvirt_error(_error(code, origin, message), "u-1")) is expected


def test_an_unknown_error_stays_a_plain_backend_error() -> None:
    """An error nobody sorted is a BackendError carrying libvirt's code and message."""
    err = sort_libvirt_error(_error(libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_FROM_QEMU, "bad xml"))
    assert type(err) is BackendError
    assert "bad xml" in str(err)


def test_vif_names_come_from_interface_targets() -> None:
    """Every <interface><target dev=...> is a vif, in XML order; interfaces without one are not."""
    xml = """<domain><devices>
      <interface type='bridge'><target dev='vif3.0'/></interface>
      <interface type='bridge'><mac address='00:16:3e:00:00:01'/></interface>
      <interface type='bridge'><target dev='vif3.1'/></interface>
      <disk type='file'><target dev='xvda'/></disk>
    </devices></domain>"""
    assert vif_names(xml) == ("vif3.0", "vif3.1")


def test_calls_after_a_lost_connection_raise_backend_unavailable() -> None:
    """A backend that is not connected raises BackendUnavailable, never returns []."""
    backend = LibvirtBackend("test:///default", connect=False)
    with pytest.raises(BackendUnavailable):
        backend.list_domains()
    with pytest.raises(BackendUnavailable):
        backend.read_counters("u-1")


def test_only_the_libvirt_backend_imports_libvirt() -> None:
    """The hypervisor binding stays behind one module (STYLE.md, point 6)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    importers = sorted(
        str(p.relative_to(root))
        for pkg in ("xvrd", "simulator")
        for p in (root / pkg).rglob("*.py")
        if re.search(r"^\s*(import libvirt\b|from libvirt\b)", p.read_text(), re.M)
    )
    assert importers == ["xvrd/backends/libvirt.py"]
