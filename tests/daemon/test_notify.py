"""notify() sends one datagram to $NOTIFY_SOCKET, and nothing without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from xvrd.notify import notify, watchdog_interval_s


def test_sends_datagram_to_path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem notify socket receives the message verbatim."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1\nSTATUS=ok")
        assert rx.recv(4096) == b"READY=1\nSTATUS=ok"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leading @ names the abstract namespace."""
    name = f"xvrd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1")
        assert rx.recv(64) == b"WATCHDOG=1"


def test_no_socket_is_a_quiet_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under systemd, or nobody listening: nothing sent, nothing raised."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent"))
    assert not notify("READY=1")


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_USEC applies only to the process named by WATCHDOG_PID."""
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None
