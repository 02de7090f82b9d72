"""The real daemon (`xvrd run` on a simulated host) in a subprocess, driven through the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xvrd.cli import main

from .peers import NOBODY, as_nobody, cli, require_root

SCENARIO = Path(__file__).parents[2] / "simulator" / "scenarios" / "receive-4.toml"
INTERVAL_S = 0.5

#: Make the kernel refuse memory both writable and executable, as MemoryDenyWriteExecute=yes
#: does in the unit, then become the daemon (inherited across exec).
_UNDER_MDWE = """
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
    sys.exit(f"prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


class Daemon:
    """One `xvrd run` process with its own socket and state directory."""

    def __init__(self, directory: Path, *, mdwe: bool = False, **env: str) -> None:
        self.socket = directory / "xvrd.sock"
        self.state_dir = directory / "state"
        self.log_path = directory / "daemon.log"
        self.mdwe = mdwe
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("XVRD_")} | env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        argv = [
            "-m", "xvrd.cli", "run", "--backend", "simulator", "--scenario", str(SCENARIO),
            "--interval", str(INTERVAL_S), "--socket", str(self.socket),
            "--state-dir", str(self.state_dir), "--log-format", "json",
        ]  # fmt: skip
        prefix = ["-c", _UNDER_MDWE] if self.mdwe else []
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *prefix, *argv], stdout=log, stderr=log, env=self.env
            )
        return self

    def status(self) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "xvrd.cli", "status", "--json", "--socket", str(self.socket)],
            capture_output=True, text=True, timeout=30, check=False, env=self.env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def wait_for_ticks(self, ticks: int, timeout_s: float = 30) -> dict[str, Any]:
        """The status once the daemon has completed ``ticks`` ticks (rates need two)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"daemon exited {self.process.returncode}:\n{self.log()}")
            if self.socket.exists():
                with contextlib.suppress(AssertionError):
                    status = self.status()
                    if (status["ticks"] or 0) >= ticks:
                        return status
            time.sleep(0.2)
        pytest.fail(f"no {ticks} ticks in {timeout_s} s:\n{self.log()}")

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    found.append(event)
        return found


def xvrd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def daemon_dir(socket_dir: Path) -> Path:
    socket_dir.chmod(0o755)  # let the nobody client reach the socket
    return socket_dir


@pytest.fixture
def running(daemon_dir: Path) -> Iterator[Daemon]:
    daemon = Daemon(daemon_dir, XVRD_SOCKET_GROUP="nogroup").start()
    yield daemon
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.stop(signal.SIGKILL)


def by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in status["domains"]}


def test_status_lists_dom0_and_every_domu_with_rates(running: Daemon) -> None:
    status = running.wait_for_ticks(2)
    domains = by_name(status)
    assert list(domains) == ["Domain-0", "dom1", "dom2", "dom3", "dom4"]
    for name in ("dom1", "dom2", "dom3", "dom4"):
        assert domains[name]["rx_mbps"] is not None
        assert domains[name]["cpu_pct"] is not None
    assert status["aggregate_mbps"] > 100
    assert status["backend"]["kind"] == "simulator"
    assert (status["backend"]["cpus"], status["backend"]["cpu_ids"]) == (2, [0, 1])


def test_overrides_through_the_cli_then_sigterm_puts_everything_back(
    running: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    running.wait_for_ticks(1)
    sock = ("--socket", str(running.socket))
    code, _, err = xvrd(capsys, "pin-dom0", "1,5", *sock)
    assert code == 1
    assert "cpus: must be a non-empty subset of the online CPUs 0-1; not online: 5" in err
    assert xvrd(capsys, "set-weight", "Domain-0", "2048", *sock)[::2] == (0, "")
    assert xvrd(capsys, "pin-dom0", "0", *sock)[::2] == (0, "")
    code, out, err = xvrd(capsys, "hold", "--reason", "e2e", *sock)
    assert (code, err) == (0, "")
    assert "e2e" in out
    code, _, err = xvrd(capsys, "set-weight", "dom9", "300", *sock)
    assert code == 1
    assert "dom9" in err

    # Weights and pinning in the status are what the last tick observed: wait for one more.
    status = running.wait_for_ticks(running.status()["ticks"] + 1)
    dom0 = by_name(status)["Domain-0"]
    assert (dom0["weight"], dom0["weight_source"]) == (2048, "manual")
    assert status["dom0_pin"] == [0]
    assert status["hold"]["held"] is True
    assert status["hold"]["reason"] == "e2e"

    code, out, _ = xvrd(capsys, "status", *sock)
    assert code == 0
    assert "HELD" in out
    assert "manual dom0 pin 0" in out

    assert running.stop() == 0
    [stopped] = running.events("stopped")
    assert stopped["restored"] >= 2  # dom0's weight and pinning at least, plus the domUs'
    assert not running.socket.exists()
    code, _, err = xvrd(capsys, "status", *sock)
    assert (code, err) == (3, f"xvrd is not running (no daemon at {running.socket})\n")


def test_a_hangup_stops_the_daemon_and_puts_settings_back(
    running: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """An `xvrd run` whose terminal goes away (SIGHUP) stops as on SIGTERM, not killed."""
    running.wait_for_ticks(1)
    assert xvrd(capsys, "set-weight", "dom2", "777", "--socket", str(running.socket))[0] == 0
    assert running.stop(signal.SIGHUP) == 0
    [stopped] = running.events("stopped")
    assert stopped["restored"] >= 1  # dom2's weight, and whatever the policy changed
    assert stopped["kept"] == 0
    assert not running.socket.exists()


def test_an_override_survives_a_crash_and_a_restart(
    running: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    running.wait_for_ticks(1)
    assert xvrd(capsys, "set-weight", "dom2", "777", "--socket", str(running.socket))[0] == 0
    running.stop(signal.SIGKILL)
    assert running.socket.exists()  # a killed daemon leaves its socket behind

    running.start()  # the stale socket is replaced
    dom2 = by_name(running.wait_for_ticks(1))["dom2"]
    assert (dom2["weight"], dom2["weight_source"]) == (777, "manual")


def test_bad_requests_and_strangers_change_nothing_and_the_daemon_keeps_serving(
    running: Daemon, tmp_path: Path
) -> None:
    require_root()
    running.wait_for_ticks(1)
    for request in (b"{oops\n", b'{"version": 1, "command": "reboot"}\n', b"x" * 70_000):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(running.socket))
            with contextlib.suppress(BrokenPipeError):
                conn.sendall(request)
            answer = json.loads(conn.recv(65536))
        assert answer["ok"] is False
        assert answer["error"]["code"] == "bad_request"

    stranger = as_nobody(
        cli("set-weight", "dom1", "9999", "--socket", str(running.socket)), tmp_path
    )
    assert stranger.code == 1, stranger.stderr
    assert "(forbidden)" in stranger.stderr
    reader = as_nobody(cli("status", "--json", "--socket", str(running.socket)), tmp_path)
    assert reader.code == 0, reader.stderr

    assert by_name(running.status())["dom1"]["weight_source"] != "manual"
    assert any(e.get("uid") == NOBODY for e in running.events("control request refused"))


def test_the_daemon_runs_without_writable_executable_memory(daemon_dir: Path) -> None:
    """What MemoryDenyWriteExecute=yes in the unit imposes, imposed here by the kernel."""
    probe = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE, "-c", "import mmap; mmap.mmap(-1, 4096, prot=7)"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if "prctl(PR_SET_MDWE) failed" in probe.stderr:
        pytest.skip(f"kernel without PR_SET_MDWE (Linux < 6.3): {probe.stderr.strip()}")
    assert "PermissionError" in probe.stderr  # the guard is on: a W+X mapping is refused

    daemon = Daemon(daemon_dir, mdwe=True).start()
    try:
        assert by_name(daemon.wait_for_ticks(2))["dom1"]["rx_mbps"] is not None
    finally:
        assert daemon.stop() == 0
