"""The daemon (`xvrd run`) against real QEMU/TCG guests under the fixture's libvirtd.

Each test runs `xvrd` as another process, as an operator would, and checks what it did with
`virsh` from a third process.
"""

from __future__ import annotations

import json
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
