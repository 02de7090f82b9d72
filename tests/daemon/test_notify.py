"""sd_notify sends one datagram to $NOTIFY_SOCKET, and nothing without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from xvrd.notify import sd_notify, watchdog_interval_s


def test_sends_datagram_to_path_socket(tmp_path: Path) -> None:
    """A filesystem notify socket receives the message verbatim."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        assert sd_notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": str(path)})
        assert rx.recv(4096) == b"READY=1\nSTATUS=ok"


def test_abstract_socket() -> None:
    """A leading @ names the abstract namespace."""
    name = f"xvrd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0" + name)
        assert sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert rx.recv(64) == b"WATCHDOG=1"


def test_no_socket_is_a_quiet_no_op() -> None:
    """Not under systemd: nothing is sent and nothing fails."""
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": "relative"})


def test_watchdog_interval() -> None:
    """WATCHDOG_USEC applies only to the process named by WATCHDOG_PID."""
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
