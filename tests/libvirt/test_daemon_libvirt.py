"""The daemon (`xvrd run`) against real QEMU/TCG guests under the fixture's libvirtd.

Each test runs `xvrd` as another process, as an operator would, and checks what it did with
`virsh` from a third process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
from conftest import Guest, import_libvirt
from virsh import schedinfo

import_libvirt()

pytestmark = pytest.mark.libvirt

XVRD = [sys.executable, "-m", "xvrd.cli"]


def _xvrd_run_once(uri: str, work: Path, interval_s: float = 2.0) -> dict[str, Any]:
    result = subprocess.run(
        [
            *XVRD, "run", "--backend", "libvirt", "--uri", uri, "--once",
            "--interval", str(interval_s), "--state-dir", str(work / "state"),
            "--socket", str(work / "xvrd.sock"), "--log-format", "json",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"xvrd run --once failed: {result.stderr[-2000:]}"
    status: dict[str, Any] = json.loads(result.stdout)
    return status


@pytest.fixture
def frames_to(guests: list[Guest]) -> Iterator[Any]:
    """Start sending frames to a guest's vif in the background until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(guest: Guest, frames_per_20ms: int = 25, size: int = 1000) -> None:
        def pump() -> None:
            while not stop.wait(0.02):
                harness.send_frames(guest.vif, frames_per_20ms, size)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def test_run_once_reports_the_guests_and_their_settings(
    qemu_uri: str, guests: list[Guest], tmp_path: Path
) -> None:
    """`xvrd run --once` sees both guests, their cpu_shares as weight, and leaves them as found."""
    before = {g.name: schedinfo(qemu_uri, g.name)["cpu_shares"] for g in guests}
    status = _xvrd_run_once(qemu_uri, tmp_path, interval_s=1.0)
    assert status["backend"]["kind"] == "libvirt"
    assert status["backend"]["scheduler"] == "posix"
    assert status["backend"]["connected"] is True
    by_name = {d["name"]: d for d in status["domains"]}
    for guest in guests:
        assert by_name[guest.name]["uuid"] == guest.uuid
        assert str(by_name[guest.name]["weight"]) == before[guest.name]
    assert {g.name: schedinfo(qemu_uri, g.name)["cpu_shares"] for g in guests} == before


def test_traffic_to_a_guest_is_its_receive_rate_in_status(
    qemu_uri: str, guests: list[Guest], tmp_path: Path, frames_to: Any
) -> None:
    """Frames pumped into vif1.0 during the tick show as guest 1's rx_mbps, not guest 2's."""
    target, other = guests
    _wait_until_receiving(target)
    frames_to(target)  # about 25 x 1000 B every 20 ms: some 10 Mb/s
    status = _xvrd_run_once(qemu_uri, tmp_path, interval_s=1.5)
    by_name = {d["name"]: d for d in status["domains"]}
    assert by_name[target.name]["rx_mbps"] > 2.0
    assert by_name[other.name]["rx_mbps"] < 0.5
    assert by_name[target.name]["tx_mbps"] < 0.5


def _wait_until_receiving(guest: Guest, timeout_s: float = 60) -> None:
    """The guest takes frames once its initramfs has brought eth0 up."""
    counter = Path(f"/sys/class/net/{guest.vif}/statistics/tx_packets")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = int(counter.read_text())
        harness.send_frames(guest.vif, 5, 100)
        time.sleep(0.2)
        if int(counter.read_text()) >= before + 5:
            return
    pytest.fail(f"{guest.name} did not take frames on {guest.vif}")


class RunningDaemon:
    """`xvrd run` over libvirt as a child process, with its own socket and state."""

    def __init__(self, uri: str, work: Path, interval_s: float = 1.0) -> None:
        self.socket = work / "xvrd.sock"
        self.log = work / "daemon.log"
        self.process = subprocess.Popen(
            [
                *XVRD, "run", "--backend", "libvirt", "--uri", uri,
                "--interval", str(interval_s), "--state-dir", str(work / "state"),
                "--socket", str(self.socket), "--log-format", "json",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"xvrd run did not start: {self.log_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*XVRD, *args, "--socket", str(self.socket)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        doc: dict[str, Any] = json.loads(result.stdout)
        return doc

    def wait_for(self, what: str, check: Any, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.status()
            if check(doc):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon never showed {what}: {doc}\n{self.log_text()}")
            time.sleep(0.3)

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def daemon(qemu_uri: str, guests: list[Guest], tmp_path: Path) -> Iterator[RunningDaemon]:
    running = RunningDaemon(qemu_uri, tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def _domain(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in doc["domains"] if d["name"] == name)
    return found


def test_set_weight_reaches_libvirt_and_sigterm_restores_it(
    daemon: RunningDaemon, qemu_uri: str, guests: list[Guest]
) -> None:
    """`xvrd set-weight` on a running daemon is what virsh reads; SIGTERM puts it back."""
    guest = guests[0]
    original = schedinfo(qemu_uri, guest.name)["cpu_shares"]
    result = daemon.cli("set-weight", guest.name, "4096")
    assert result.returncode == 0, result.stderr
    assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == "4096"
    daemon.wait_for(
        "the manual weight",
        lambda doc: (
            _domain(doc, guest.name)["weight"] == 4096
            and _domain(doc, guest.name)["weight_source"] == "manual"
        ),
    )
    assert daemon.stop() == 0
    assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == original


def test_daemon_rides_out_a_libvirtd_restart(
    daemon: RunningDaemon, libvirtd: harness.Libvirtd, qemu_uri: str, guests: list[Guest]
) -> None:
    """libvirtd stopped under the daemon: status says so; restarted: it reconnects, keeps
    the manual weight and the originals, and SIGTERM still restores them."""
    guest = guests[1]
    original = schedinfo(qemu_uri, guest.name)["cpu_shares"]
    assert daemon.cli("set-weight", guest.name, "3000").returncode == 0
    daemon.wait_for("a tick", lambda doc: doc["ticks"] >= 1)
    libvirtd.stop()
    try:
        down = daemon.wait_for(
            "the lost connection", lambda doc: doc["backend"]["connected"] is False
        )
        assert down["backend"]["last_error"]
    finally:
        libvirtd.start()
    up = daemon.wait_for(
        "the reconnect",
        lambda doc: (
            doc["backend"]["connected"] is True
            and any(d["name"] == guest.name for d in doc["domains"])
        ),
        timeout_s=60,
    )
    assert _domain(up, guest.name)["weight_source"] == "manual"
    assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == "3000"
    assert daemon.stop() == 0
    assert schedinfo(qemu_uri, guest.name)["cpu_shares"] == original
    log = daemon.log.read_text()
    assert log.count("host unreachable") == 1, "the loss is logged once, not every tick"
    assert "host reachable again" in log


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        ("test:///default", 78, r"cannot be tuned: .*scheduler 'fair'"),
        ("qemu+unix:///system?socket=/nonexistent/sock", 69, "cannot reach the host"),
    ],
    ids=["untunable-driver", "no-libvirtd"],
)
def test_run_refuses_at_start_with_one_clear_message(
    uri: str, code: int, message: str, tmp_path: Path
) -> None:
    """A driver without a usable weight, or no libvirtd: one line on stderr, sysexits code."""
    result = subprocess.run(
        [
            *XVRD, "run", "--backend", "libvirt", "--uri", uri, "--once",
            "--state-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "sock"),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == code
    assert re.search(message, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
