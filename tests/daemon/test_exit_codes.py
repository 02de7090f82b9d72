"""`xvrd run` and the client commands: bad config and missing files exit 78, host untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from xvrd.backends.base import BackendError
from xvrd.cli import main

from .conftest import simulator_config

XVRD = [sys.executable, "-m", "xvrd.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XVRD, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_missing_config_file(tmp_path: Path) -> None:
    """An explicit --config that does not exist: the documented message, exit 78."""
    missing = tmp_path / "nope.toml"
    r = run("run", "--config", str(missing))
    assert r.returncode == 78
    assert r.stderr.strip() == (
        f"xvrd: config file {missing} does not exist (given with --config or XVRD_CONFIG)"
    )


def test_bad_value_names_key_and_touches_nothing(tmp_path: Path) -> None:
    """One line naming the key and what is accepted; no state written, no socket made."""
    state = tmp_path / "state"
    config = tmp_path / "x.toml"
    config.write_text(
        f'state_dir = "{state}"\nsocket_path = "{tmp_path / "s.sock"}"\ninterval_s = 0\n'
    )
    r = run("run", "--config", str(config), "--backend", "simulator")
    assert r.returncode == 78
    assert len(r.stderr.strip().splitlines()) == 1
    assert "interval_s" in r.stderr
    assert "0.1" in r.stderr
    assert not state.exists()
    assert not (tmp_path / "s.sock").exists()


def test_bad_environment_value(tmp_path: Path) -> None:
    """XVRD_* values are checked the same way."""
    config = tmp_path / "x.toml"
    config.write_text("")
    r = run("run", "--config", str(config), env={"XVRD_RESTORE_ON_EXIT": "maybe"})
    assert r.returncode == 78
    assert "restore_on_exit" in r.stderr


def test_unknown_group(tmp_path: Path) -> None:
    """A socket or admin group that does not exist is a configuration error."""
    config = tmp_path / "x.toml"
    config.write_text('admin_group = "no-such-group-xvrd"\n')
    r = run("run", "--config", str(config))
    assert r.returncode == 78
    assert r.stderr.strip() == (
        "xvrd: admin_group: no such group 'no-such-group-xvrd' (a group name, or empty)"
    )


def _simulated(tmp_path: Path, state_dir: Path) -> Path:
    return simulator_config(tmp_path / "x.toml", state_dir, tmp_path / "s.sock")


def test_state_file_that_is_not_text(tmp_path: Path) -> None:
    """A state file of random bytes stops the start with the documented message, exit 78."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_bytes(bytes(range(128, 256)))
    r = run("run", "--config", str(_simulated(tmp_path, state)))
    assert r.returncode == 78, r.stderr
    assert "is not a valid xvrd state file" in r.stderr
    assert "Traceback" not in r.stderr


def test_state_dir_that_cannot_be_written(tmp_path: Path) -> None:
    """A state directory that cannot be created (even by root: /proc refuses new entries):
    one line naming the file, exit 78, no socket left behind."""
    state = Path("/proc/xvrd-test-no-such-dir/state")
    r = run("run", "--config", str(_simulated(tmp_path, state)))
    assert r.returncode == 78, r.stderr
    assert r.stderr.strip().startswith(f"xvrd: cannot write the state directory {state}")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "s.sock").exists()


def test_a_host_error_at_start_is_one_line_and_exit_69(
    tmp_path: Path, mocker: MockerFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A libvirt error of no known kind while the host is first read (here faked: it needs
    a broken libvirtd) stops the start with one line, not a traceback, and nothing written."""
    mocker.patch(
        "xvrd.commands.run.make_backend",
        side_effect=BackendError("libvirt error 1: internal error: libxl went away"),
    )
    state = tmp_path / "state"
    config = simulator_config(tmp_path / "x.toml", state, tmp_path / "s.sock")
    code = main(["run", "--config", str(config)])
    assert code == 69
    assert capsys.readouterr().err == (
        "xvrd: cannot read the host: libvirt error 1: internal error: libxl went away\n"
    )
    assert not (state / "state.json").exists()


def test_a_socket_path_that_cannot_be_used_is_refused_before_the_host_is_touched(
    tmp_path: Path,
) -> None:
    """The socket path is a regular file: exit 78 with the saved override not applied (the
    socket used to be made after reconcile had applied it), the file left as it was."""
    from simulator.host import SimulatedHost
    from simulator.scenario import load_scenario

    from .conftest import SCENARIOS

    dom1 = SimulatedHost(load_scenario(SCENARIOS / "receive-4.toml")).domains()[1]
    state = tmp_path / "state"
    state.mkdir()
    saved = {"version": 2, "overrides": {dom1.uuid: {"name": "dom1", "weight": 999}}}
    (state / "state.json").write_text(json.dumps(saved))
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("mine\n")
    config = simulator_config(tmp_path / "x.toml", state, not_a_socket)
    r = run("run", "--config", str(config))
    assert r.returncode == 78, r.stderr
    assert "not a socket" in r.stderr
    assert "setting changed" not in r.stdout + r.stderr
    assert not_a_socket.read_text() == "mine\n"
