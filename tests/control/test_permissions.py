"""Who may do what, with a real client running as another uid (`nobody`).

The tests run as root (they need to switch uid); the child process drops to nobody/nogroup
before it connects, so the server sees a real unprivileged peer through SO_PEERCRED.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xvrd.control.api import ControlError
from xvrd.control.client import ControlClient
from xvrd.control.server import ControlServer

from .conftest import FakeDaemon
from .peers import NOBODY, as_nobody, cli, require_root


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


CHANGES = {
    "set_weight": {"domain": "web1", "weight": 512},
    "unset": {"domain": "web1"},
    "pin_dom0": {"cpus": [0]},
    "unpin_dom0": {},
    "hold": {"reason": "mine now"},
    "resume": {},
    "restore": {},
}


def try_every_change(path: Path) -> Callable[[], int]:
    """Each change through the client library; prints the outcome of each as JSON."""

    def work() -> int:
        client = ControlClient(str(path))
        outcome = {}
        for command, args in CHANGES.items():
            try:
                client.call(command, args)
                outcome[command] = "ok"
            except ControlError as error:
                outcome[command] = error.code
        print(json.dumps(outcome))
        return 0

    return work


@pytest.fixture
def reachable_dir(socket_dir: Path) -> Path:
    """Let other users traverse the temporary directory; the socket's own dir is the gate."""
    socket_dir.chmod(0o755)
    return socket_dir


@pytest.fixture
def shared_server(reachable_dir: Path, daemon: FakeDaemon) -> Iterator[ControlServer]:
    """Socket group nogroup (so nobody may connect), no admin group (only root may change)."""
    with ControlServer(reachable_dir / "run" / "xvrd.sock", daemon, socket_group="nogroup") as s:
        yield s


def test_another_user_in_the_socket_group_may_read_status(
    shared_server: ControlServer, tmp_path: Path
) -> None:
    result = as_nobody(cli("status", "--json", "--socket", str(shared_server.path)), tmp_path)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["backend"]["kind"] == "simulator"


def test_another_user_may_change_nothing(
    shared_server: ControlServer, daemon: FakeDaemon, tmp_path: Path
) -> None:
    every = as_nobody(try_every_change(shared_server.path), tmp_path)
    assert every.code == 0, every.stderr
    outcome = json.loads(every.stdout)
    assert set(outcome.values()) == {"forbidden"}
    assert len(outcome) == 7

    refused = as_nobody(
        cli("set-weight", "web1", "512", "--socket", str(shared_server.path)), tmp_path
    )
    assert refused.code == 1
    assert refused.stderr == "xvrd set-weight: only root may change settings (forbidden)\n"
    assert daemon.changes() == []


def test_refusals_are_logged_with_the_peer(
    shared_server: ControlServer, logs: list[dict[str, object]], tmp_path: Path
) -> None:
    as_nobody(cli("resume", "--socket", str(shared_server.path)), tmp_path)
    refusals = [e for e in logs if e["event"] == "control request refused"]
    assert len(refusals) == 1
    assert refusals[0]["uid"] == NOBODY
    assert refusals[0]["command"] == "resume"


def test_a_member_of_the_admin_group_may_change(
    reachable_dir: Path, daemon: FakeDaemon, tmp_path: Path
) -> None:
    path = reachable_dir / "run" / "xvrd.sock"
    with ControlServer(path, daemon, socket_group="nogroup", admin_group="nogroup"):
        every = as_nobody(try_every_change(path), tmp_path)
    assert every.code == 0, every.stderr
    assert set(json.loads(every.stdout).values()) == {"ok"}
    assert len(daemon.changes()) == 7


def test_a_user_outside_the_socket_group_cannot_connect(
    reachable_dir: Path, daemon: FakeDaemon, tmp_path: Path
) -> None:
    path = reachable_dir / "run" / "xvrd.sock"
    with ControlServer(path, daemon):  # root:root 0660
        result = as_nobody(cli("status", "--socket", str(path)), tmp_path)
    assert result.code == 4
    assert result.stderr.startswith(f"xvrd: permission denied connecting to {path}")
    assert daemon.calls == []


def test_the_connections_kept_for_admins_serve_root_not_others(
    reachable_dir: Path, daemon: FakeDaemon, tmp_path: Path
) -> None:
    """The one ordinary slot taken by an idle connection: nobody is told the daemon is
    busy, root still gets an answer."""
    path = reachable_dir / "run" / "xvrd.sock"
    with (
        ControlServer(path, daemon, socket_group="nogroup", max_connections=1, admin_connections=1),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle,
    ):
        idle.connect(str(path))
        time.sleep(0.1)  # let the server take it
        refused = as_nobody(cli("status", "--socket", str(path)), tmp_path)
        assert refused.code == 1
        assert "too many connections to the daemon; try again (unavailable)" in refused.stderr
        assert ControlClient(str(path)).status()["backend"]["kind"] == "simulator"
