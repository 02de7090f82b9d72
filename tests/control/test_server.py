"""The control server over a real socket, with a fake daemon behind it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from xvrd.control.api import ControlError
from xvrd.control.client import ControlClient, DaemonNotRunning
from xvrd.control.server import ControlServer, Peer, SocketSetupError, may_change

from .conftest import FakeDaemon, sample_status


def exchange(path: Path, data: bytes, *, shut_write: bool = False) -> dict[str, Any]:
    """Send raw bytes, read the server's answer to the end, decode it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(data)
        if shut_write:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.endswith(b"\n")
    document: dict[str, Any] = json.loads(answer)
    return document


def still_serves(server: ControlServer) -> None:
    assert ControlClient(str(server.path)).status() == sample_status()


def test_status_is_the_daemons_document(server: ControlServer) -> None:
    assert ControlClient(str(server.path)).status() == sample_status()


def test_each_change_reaches_the_daemon_with_typed_arguments(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    client = ControlClient(str(server.path))
    assert client.set_weight("web1", 512) == "web1: weight 512 (manual)"
    assert client.unset("web2") == "web2: weight back to automatic"
    assert client.pin_dom0(frozenset({0, 1})) == "dom0 pinned to [0, 1]"
    assert client.unpin_dom0() == "dom0 unpinned"
    assert client.hold("upgrade") == "held"
    assert client.resume() == "resumed"
    assert client.restore() == "restored; held"
    assert daemon.changes() == [
        ("set_weight", ("web1", 512)),
        ("unset", ("web2",)),
        ("pin_dom0", (frozenset({0, 1}),)),
        ("unpin_dom0", ()),
        ("hold", ("upgrade",)),
        ("resume", ()),
        ("restore", ()),
    ]


def test_the_daemons_refusal_reaches_the_client(server: ControlServer) -> None:
    with pytest.raises(ControlError) as caught:
        ControlClient(str(server.path)).set_weight("web9", 512)
    assert caught.value.code == "not_found"
    assert "web9" in caught.value.message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{oops\n", "malformed JSON"),
        (b'{"version": 1, "command": "reboot"}\n', "unknown command 'reboot'"),
        (b'{"version": 9, "command": "status"}\n', "unsupported protocol version 9"),
        (
            b'{"version": 1, "command": "set_weight", "args": {"domain": "w", "weight": 0}}\n',
            "1 to",
        ),
        (b"\n", "empty request"),
    ],
)
def test_bad_requests_get_an_error_and_the_server_keeps_serving(
    server: ControlServer, daemon: FakeDaemon, data: bytes, fragment: str
) -> None:
    answer = exchange(server.path, data)
    assert answer["ok"] is False
    assert answer["version"] == 1
    assert answer["error"]["code"] in {"bad_request", "invalid"}
    assert fragment in answer["error"]["message"]
    assert daemon.changes() == []
    still_serves(server)


def test_a_request_may_end_with_the_clients_writes_instead_of_a_newline(
    server: ControlServer,
) -> None:
    answer = exchange(server.path, b'{"version": 1, "command": "status"}', shut_write=True)
    assert answer["ok"] is True


def test_an_oversized_request_is_cut_off_and_the_server_keeps_serving(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    big = b'{"version": 1, "command": "hold", "args": {"reason": "' + b"x" * 70_000
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(server.path))
        with contextlib.suppress(BrokenPipeError):  # the server may stop reading early
            conn.sendall(big)
        answer = conn.recv(65536)
    assert b"larger than 65536 bytes" in answer
    assert daemon.changes() == []
    still_serves(server)


def test_a_slow_client_is_cut_off_without_holding_up_others(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    """The server's read timeout is 0.5 s here; meanwhile another client is served at once."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(5)
        slow.connect(str(server.path))
        slow.sendall(b'{"version": 1, "comm')
        started = time.monotonic()
        still_serves(server)
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):
            slow.recv(65536)  # another client was served while this one is still pending
        slow.settimeout(5)
        answer = slow.recv(65536)
        waited = time.monotonic() - started
    assert b"not complete in 0.5 s" in answer
    assert 0.3 < waited < 3
    still_serves(server)


def test_a_client_trickling_bytes_is_cut_off_at_the_deadline(server: ControlServer) -> None:
    """The deadline is for the whole request, not per read."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(5)
        slow.connect(str(server.path))
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012
            for byte in b'{"version": 1, "command": "status"' * 10:
                slow.send(bytes([byte]))
                time.sleep(0.05)
    assert time.monotonic() - started < 2


def test_calls_into_the_daemon_are_one_at_a_time(server: ControlServer, daemon: FakeDaemon) -> None:
    daemon.call_seconds = 0.05
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            ControlClient(str(server.path)).hold("x")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(daemon.changes()) == 6
    assert not daemon.overlapped


def test_a_daemon_failure_is_unavailable_and_logged(
    server: ControlServer, daemon: FakeDaemon
) -> None:
    daemon.fail_with = RuntimeError("boom")
    with capture_logs() as logs, pytest.raises(ControlError) as caught:
        ControlClient(str(server.path)).resume()
    assert caught.value.code == "unavailable"
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["control request failed"]
    daemon.fail_with = None
    still_serves(server)


def test_socket_mode_and_cleanup(socket_dir: Path, daemon: FakeDaemon) -> None:
    path = socket_dir / "deep" / "er" / "xvrd.sock"
    server = ControlServer(path, daemon)
    server.start()
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    server.close()
    assert not path.exists()
    with pytest.raises(DaemonNotRunning):
        ControlClient(str(path)).status()


def test_close_is_prompt_even_with_a_client_mid_request(
    socket_dir: Path, daemon: FakeDaemon
) -> None:
    server = ControlServer(socket_dir / "xvrd.sock", daemon, read_timeout_s=30)
    server.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.connect(str(server.path))
        slow.sendall(b"{")
        time.sleep(0.1)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1
    assert not server.path.exists()
    assert [t.name for t in threading.enumerate() if t.name.startswith("xvrd-control")] == []


def test_a_stale_socket_is_replaced(socket_dir: Path, daemon: FakeDaemon) -> None:
    path = socket_dir / "xvrd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # closed without unlinking: what a crashed daemon leaves
    with ControlServer(path, daemon) as server:
        still_serves(server)


def test_a_live_socket_is_not_stolen(socket_dir: Path, daemon: FakeDaemon) -> None:
    path = socket_dir / "xvrd.sock"
    with ControlServer(path, daemon) as first:
        with pytest.raises(SocketSetupError, match="another process is listening"):
            ControlServer(path, FakeDaemon()).start()
        still_serves(first)


def test_a_file_that_is_not_a_socket_is_left_alone(socket_dir: Path, daemon: FakeDaemon) -> None:
    path = socket_dir / "xvrd.sock"
    path.write_text("precious")
    with pytest.raises(SocketSetupError, match="not a socket"):
        ControlServer(path, daemon).start()
    assert path.read_text() == "precious"


def test_an_unknown_socket_group_is_a_setup_error(socket_dir: Path, daemon: FakeDaemon) -> None:
    with pytest.raises(SocketSetupError, match="socket group 'no-such-group-xvrd'"):
        ControlServer(socket_dir / "s", daemon, socket_group="no-such-group-xvrd")


def test_the_socket_group_owns_the_socket_and_its_directory(
    socket_dir: Path, daemon: FakeDaemon
) -> None:
    path = socket_dir / "run" / "xvrd.sock"
    with ControlServer(path, daemon, socket_group="nogroup"):
        nogroup = 65534
        assert path.stat().st_gid == nogroup
        assert path.parent.stat().st_gid == nogroup
        assert path.parent.stat().st_mode & stat.S_IXGRP


def test_a_socket_group_the_daemon_may_not_give_is_a_setup_error(
    socket_dir: Path, daemon: FakeDaemon, mocker: Any
) -> None:
    """A daemon not allowed to chown (not root, not in the group) gets a setup error, not a
    traceback. The refusal is faked: the tests run as root, who may always chown."""
    mocker.patch("xvrd.control.server.os.chown", side_effect=PermissionError(1, "not permitted"))
    path = socket_dir / "run" / "xvrd.sock"
    with pytest.raises(SocketSetupError, match=r"cannot give socket directory .* not permitted"):
        ControlServer(path, daemon, socket_group="nogroup").start()
    assert not path.exists()


def test_root_may_change_and_others_only_through_the_admin_group() -> None:
    nobody = Peer(pid=1, uid=65534, gid=65534)
    assert may_change(Peer(pid=1, uid=0, gid=0), None)
    assert not may_change(nobody, None)
    assert not may_change(nobody, "no-such-group-xvrd")
    assert not may_change(nobody, "root")
    assert may_change(nobody, "nogroup")  # the gid the peer connected with


def test_supplementary_members_of_the_admin_group_may_change(mocker: Any) -> None:
    """The group database cannot be edited in a test: its lookups are faked here."""
    import grp
    import pwd

    mocker.patch.object(
        grp, "getgrnam", return_value=grp.struct_group(("xvrd-admin", "x", 990, ["alice"]))
    )
    users = {
        1000: pwd.struct_passwd(("alice", "x", 1000, 1000, "", "/", "/bin/sh")),
        1001: pwd.struct_passwd(("bob", "x", 1001, 990, "", "/", "/bin/sh")),
        1002: pwd.struct_passwd(("carol", "x", 1002, 1002, "", "/", "/bin/sh")),
    }
    mocker.patch.object(pwd, "getpwuid", side_effect=users.__getitem__)
    assert may_change(Peer(pid=1, uid=1000, gid=1000), "xvrd-admin")  # listed member
    assert may_change(Peer(pid=1, uid=1001, gid=1001), "xvrd-admin")  # primary group
    assert not may_change(Peer(pid=1, uid=1002, gid=1002), "xvrd-admin")
    assert not may_change(Peer(pid=1, uid=4242, gid=4242), "xvrd-admin")  # no passwd entry


def test_requests_are_logged_as_refusals_or_changes(server: ControlServer) -> None:
    with capture_logs() as logs:
        exchange(server.path, b"{oops\n")
        ControlClient(str(server.path)).resume()
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [("control request refused", "warning"), ("control change requested", "info")]
    assert logs[1]["uid"] == os.getuid()


def test_a_directory_others_may_enter_is_not_regrouped(
    socket_dir: Path, daemon: FakeDaemon
) -> None:
    """A socket directly in /run (or /tmp) must not change /run's group."""
    socket_dir.chmod(0o755)
    before = socket_dir.stat()
    with ControlServer(socket_dir / "xvrd.sock", daemon, socket_group="nogroup") as server:
        assert server.path.stat().st_gid == 65534
        after = socket_dir.stat()
    assert (after.st_gid, after.st_mode) == (before.st_gid, before.st_mode)


def test_a_flood_of_idle_connections_is_bounded(socket_dir: Path, daemon: FakeDaemon) -> None:
    """Beyond max_connections, and the admin_connections kept for those who may change
    settings (root, here), a connection is told why and closed at once; service resumes as
    they end."""
    path = socket_dir / "xvrd.sock"
    with ControlServer(
        path, daemon, read_timeout_s=0.5, max_connections=2, admin_connections=1
    ) as server:
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for conn in idle:
            conn.connect(str(path))
        time.sleep(0.1)  # let the server take all three
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
            extra.settimeout(5)
            extra.connect(str(path))
            started = time.monotonic()
            answer = json.loads(extra.recv(1000))
            assert time.monotonic() - started < 0.4
        assert answer["error"] == {
            "code": "unavailable",
            "message": "too many connections to the daemon; try again",
        }
        for conn in idle:
            assert b"not complete" in conn.recv(65536)  # cut off at the read timeout
            conn.close()
        deadline = time.monotonic() + 5  # the handlers free their slots just after answering
        while True:
            try:
                still_serves(server)
                break
            except ControlError:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_a_connection_closed_without_a_byte_is_a_probe_not_a_refusal(
    server: ControlServer,
) -> None:
    """What a second xvrd does to see whether one listens: no warning in the log."""
    with capture_logs() as logs:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(server.path))
        probe.close()
        still_serves(server)
    assert [e for e in logs if e["event"] == "control request refused"] == []


def test_a_client_refused_as_too_many_is_told_why_even_if_it_sends_late(
    socket_dir: Path, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon answers a connection it refuses and closes at once: a client that sends
    its request after that (scheduled out between connect and send) gets a broken pipe,
    then reads the answer left for it."""
    path = socket_dir / "xvrd.sock"
    real_connect = socket.socket.connect

    def slow_connect(self: socket.socket, address: str) -> None:
        real_connect(self, address)
        time.sleep(0.1)

    with (
        ControlServer(path, daemon, max_connections=1, admin_connections=0),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle,
    ):
        idle.connect(str(path))
        time.sleep(0.1)  # let the server take it
        monkeypatch.setattr(socket.socket, "connect", slow_connect)
        with pytest.raises(ControlError) as refused:
            ControlClient(str(path)).status()
    assert refused.value.message == "too many connections to the daemon; try again"
