"""notify() sends one datagram to $NOTIFY_SOCKET, and nothing without it; the watchdog is
petted while ticks complete, however long the interval, and not while one hangs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xvrd.notify import TickWatchdog, notify, watchdog_interval_s

from .conftest import simulator_config


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


def test_watchdog_pets_every_half_period() -> None:
    dog = TickWatchdog(10.0)
    assert dog.due(0.0)
    assert not dog.due(4.9)
    assert dog.due(5.0)


def test_watchdog_stops_while_a_tick_hangs() -> None:
    """A tick running for a whole period stops the petting, so systemd restarts the daemon;
    a tick that finishes in time does not."""
    dog = TickWatchdog(10.0)
    assert dog.due(0.0)
    dog.tick_started(1.0)
    assert dog.due(6.0)  # running 5 s: still alive
    assert not dog.due(11.0)  # running 10 s: hung
    assert not dog.due(30.0)
    dog.tick_finished()
    assert dog.due(30.5)


def test_daemon_pets_watchdog_with_interval_longer_than_it(tmp_path: Path) -> None:
    """Under WatchdogSec=1 with a 60 s tick, `xvrd run` still sends WATCHDOG=1 twice a second."""
    config = simulator_config(
        tmp_path / "xvrd.toml", tmp_path / "state", tmp_path / "xvrd.sock",
        interval_s=60, policy="noop",
    )  # fmt: skip
    notify_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(notify_path))
        rx.settimeout(10)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "xvrd.cli", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            pets: list[float] = []
            deadline = time.monotonic() + 20
            while len(pets) < 4 and time.monotonic() < deadline:
                if b"WATCHDOG=1" in rx.recv(4096):
                    pets.append(time.monotonic())
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        assert len(pets) == 4, err.decode()
        # Four pets of a 1 s watchdog, well before the 60 s tick comes round again.
        assert pets[-1] - pets[0] < 5
