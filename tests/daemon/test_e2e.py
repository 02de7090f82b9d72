"""End to end, what tests/control does not cover: a persisted hold, a second daemon, SIGINT.

`xvrd run` in a subprocess on a simulated host with its own socket and state directory,
driven only through the `xvrd` command line.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.host import SimulatedHost
from simulator.scenario import load_scenario

from .conftest import SCENARIOS, simulator_config

XVRD = [sys.executable, "-m", "xvrd.cli"]
SCENARIO = SCENARIOS / "receive-4.toml"


class RunningDaemon:
    """One `xvrd run` process and the paths it uses."""

    def __init__(self, base: Path, policy: str = "noop", scenario: Path = SCENARIO) -> None:
        self.base = base
        self.sock = base / "xvrd.sock"
        self.state_dir = base / "state"
        self.log = base / "daemon.log"
        # policy noop: nothing changes the host but what a test asks.
        self.config = simulator_config(
            base / "xvrd.toml", self.state_dir, self.sock,
            interval_s=0.3, scenario=scenario, policy=policy,
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*XVRD, "run", "--config", str(self.config)], stderr=log, stdout=log
            )
        self.wait_for(lambda doc: doc["ticks"] >= 2)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*XVRD, *args, "--socket", str(self.sock)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def status(self) -> dict[str, Any]:
        r = self.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        doc: dict[str, Any] = json.loads(r.stdout)
        return doc

    def wait_for(self, ok: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited {self.proc.returncode}: {self.log.read_text()}")
            with contextlib.suppress(AssertionError):
                if ok(self.status()):
                    return
            time.sleep(0.1)
        pytest.fail("the daemon never reached the expected state")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=15)


@pytest.fixture
def daemon() -> Iterator[RunningDaemon]:
    base = Path(tempfile.mkdtemp(prefix="xvrd-e2e-"))
    d = RunningDaemon(base)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()
    shutil.rmtree(base, ignore_errors=True)


def test_hold_is_persisted_across_a_restart(daemon: RunningDaemon) -> None:
    """`xvrd hold` is shown, survives a restart, and is lifted by `xvrd resume`.

    (That the policy is kept off the host under hold is tested in-process with an acting
    policy in tests/xvrd/test_daemon.py.)
    """
    daemon.start()
    assert daemon.cli("hold", "--reason", "maintenance").returncode == 0
    assert "maintenance" in daemon.cli("status").stdout
    assert daemon.signal(signal.SIGTERM) == 0
    daemon.start()
    assert daemon.status()["hold"]["reason"] == "maintenance"
    assert daemon.cli("resume").returncode == 0
    assert not daemon.status()["hold"]["held"]


def test_hold_keeps_the_adaptive_policy_off_until_resume() -> None:
    """With a hold saved before start, the adaptive policy leaves dom0's weight alone on the
    receive-8 host (where it otherwise raises it); after `xvrd resume` it acts."""
    base = Path(tempfile.mkdtemp(prefix="xvrd-e2e-"))
    d = RunningDaemon(base, policy="adaptive", scenario=SCENARIO.with_name("receive-8.toml"))
    d.state_dir.mkdir()
    (d.state_dir / "state.json").write_text(
        json.dumps({"version": 1, "hold": {"reason": "testing", "since": "2026-01-01T00:00:00Z"}})
    )
    try:
        d.start()
        d.wait_for(lambda doc: doc["ticks"] >= 8)
        dom0 = d.status()["domains"][0]
        assert (dom0["weight"], dom0["weight_source"]) == (256, "default")
        assert d.cli("resume").returncode == 0
        d.wait_for(lambda doc: doc["domains"][0]["weight"] > 256)
        assert d.status()["domains"][0]["weight_source"] == "auto"
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_second_daemon_is_refused_before_touching_anything(daemon: RunningDaemon) -> None:
    """A second `xvrd run` (or `--once`) on a live socket, or on another socket with the
    same state directory, exits 69 without reconciling or writing state, so it cannot put
    back what the running daemon changed; SIGINT then stops the first."""
    daemon.start()
    assert daemon.cli("set-weight", "dom2", "1024").returncode == 0
    state = daemon.state_dir / "state.json"
    before = json.loads(state.read_text())
    for extra in ([], ["--once"]):
        second = subprocess.run(
            [*XVRD, "run", "--config", str(daemon.config), *extra],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 69, extra
        assert "another xvrd is listening" in second.stderr
    # Nor on another socket with the same state directory: the state is the daemon's.
    other = subprocess.run(
        [
            *XVRD,
            "run",
            "--config",
            str(daemon.config),
            "--once",
            "--socket",
            str(daemon.sock) + "2",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 69
    assert other.stderr.strip() == f"xvrd: another xvrd uses the state directory {daemon.state_dir}"
    after = json.loads(state.read_text())
    assert (after["originals"], after["overrides"]) == (before["originals"], before["overrides"])
    assert "reconciled" not in second.stderr
    weights = {d["name"]: d["weight"] for d in daemon.status()["domains"]}
    assert weights["dom2"] == 1024
    started = time.monotonic()
    assert daemon.signal(signal.SIGINT) == 0
    assert time.monotonic() - started < 5
    assert not daemon.sock.exists()


def _once(config: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [*XVRD, "run", "--config", str(config), "--once", *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def test_once_in_advise_mode_leaves_even_saved_overrides_unapplied(tmp_path: Path) -> None:
    """A daemon that died with an override and a dom0 pinning saved: `--once --mode advise`
    lists re-applying them as not applied and leaves the state file as it was (not even
    forgetting an earlier boot's original); `--once` in auto mode applies them, as the
    daemon's restart would."""
    state_dir = tmp_path / "state"
    config = simulator_config(
        tmp_path / "xvrd.toml", state_dir, tmp_path / "xvrd.sock",
        scenario=SCENARIO, policy="noop", interval_s=0.3,
    )  # fmt: skip
    host = SimulatedHost(load_scenario(SCENARIO), seed=0)  # the daemon's host, seed 0
    uuid = next(d.uuid for d in host.domains() if d.name == "dom2")
    state_dir.mkdir()
    saved = {
        "overrides": {uuid: {"name": "dom2", "weight": 1024}},
        "dom0_pin": [0],
        "originals": {uuid: {"name": "dom2", "weight": 256}},
        "boot_id": "an-earlier-boot",
    }
    (state_dir / "state.json").write_text(json.dumps(saved))

    advised = _once(config, "--mode", "advise")
    assert {d["name"]: d["weight"] for d in advised["domains"]}["dom2"] == 256
    dom0 = next(d for d in advised["domains"] if d["name"] == "Domain-0")
    assert dom0["pinning"] == [[0, 1]]
    not_applied = {(a["domain"], a["setting"]) for a in advised["actions"] if not a["applied"]}
    assert {("dom2", "weight"), ("Domain-0", "pinning")} <= not_applied
    assert not any(a["applied"] for a in advised["actions"])
    assert (state_dir / "state.json").read_text() == json.dumps(saved)

    applied = _once(config)
    assert {d["name"]: d["weight"] for d in applied["domains"]}["dom2"] == 1024
    assert uuid in json.loads((state_dir / "state.json").read_text())["originals"]
