"""`xvrd status` and the override commands, end to end against an in-process server."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from xvrd.cli import main
from xvrd.commands.control import watch_status
from xvrd.control.client import ControlClient
from xvrd.control.server import ControlServer

from .conftest import FakeDaemon, sample_status


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json_is_the_document(
    server: ControlServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", "--json", "--socket", str(server.path))
    assert code == 0
    assert json.loads(out) == sample_status()


def test_status_table(server: ControlServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--socket", str(server.path))
    assert code == 0
    assert "simulator (sim://receive-3)" in out
    assert "web1 *" in out
    assert "Jain 0.987" in out


def test_the_socket_path_comes_from_the_environment(
    server: ControlServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XVRD_SOCKET_PATH", str(server.path))
    assert run(capsys, "status", "--json")[0] == 0


def test_the_socket_path_comes_from_the_config_file(
    server: ControlServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("XVRD_SOCKET_PATH", raising=False)
    config = tmp_path / "xvrd.toml"
    # Only socket_path is read: a key the client does not need may even be wrong.
    config.write_text(f'socket_path = "{server.path}"\ninterval_s = -1\n')
    assert run(capsys, "status", "--json", "--config", str(config))[0] == 0
    monkeypatch.setenv("XVRD_CONFIG", str(config))
    assert run(capsys, "set-weight", "web1", "512")[0] == 0
    # --socket and the environment still win over the file.
    assert run(capsys, "status", "--socket", str(tmp_path / "none.sock"))[0] == 3
    monkeypatch.setenv("XVRD_SOCKET_PATH", str(tmp_path / "none.sock"))
    assert run(capsys, "status")[0] == 3


def test_an_empty_socket_path_variable_is_a_usage_error(
    server: ControlServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the daemon refuses it: not the default socket (another daemon's, maybe)."""
    monkeypatch.setenv("XVRD_SOCKET_PATH", " ")
    code, out, err = run(capsys, "hold")
    assert code == 2
    assert "XVRD_SOCKET_PATH is empty" in err
    assert out == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "does not exist"),
        ("socket_path = [1]\n", "socket_path: a non-empty path string"),
        ("socket_path = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    text: str | None,
    message: str,
) -> None:
    monkeypatch.delenv("XVRD_SOCKET_PATH", raising=False)
    config = tmp_path / "xvrd.toml"
    if text is not None:
        config.write_text(text)
    code, out, err = run(capsys, "hold", "--config", str(config))
    assert code == 2
    assert message in err
    assert str(config) in err
    assert out == ""


@pytest.mark.parametrize(
    "case",
    [
        (["set-weight", "web1", "512"], ("set_weight", ("web1", 512)), "web1: weight 512 (manual)"),
        (["unset", "web2"], ("unset", ("web2",)), "web2: weight back to automatic"),
        (["pin-dom0", "0-1"], ("pin_dom0", (frozenset({0, 1}),)), "dom0 pinned to [0, 1]"),
        (["pin-dom0", "1"], ("pin_dom0", (frozenset({1}),)), "dom0 pinned to [1]"),
        (["unpin-dom0"], ("unpin_dom0", ()), "dom0 unpinned"),
        (["hold", "--reason", "kernel upgrade"], ("hold", ("kernel upgrade",)), "held"),
        (["hold"], ("hold", ("",)), "held"),
        (["resume"], ("resume", ()), "resumed"),
        (["restore"], ("restore", ()), "restored; held"),
    ],
)
def test_each_command_reaches_the_daemon(
    server: ControlServer,
    daemon: FakeDaemon,
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], tuple[str, tuple[object, ...]], str],
) -> None:
    argv, call, message = case
    code, out, err = run(capsys, *argv, "--socket", str(server.path))
    assert (code, out, err) == (0, message + "\n", "")
    assert daemon.changes() == [call]


def test_a_refusal_exits_1_with_the_daemons_message(
    server: ControlServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "set-weight", "web9", "300", "--socket", str(server.path))
    assert (code, out) == (1, "")
    assert err == "xvrd set-weight: no domain 'web9' (not_found)\n"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["set-weight", "web1", "0"], "argument WEIGHT: '0' is not an integer from 1 to 65535"),
        (["set-weight", "web1", "65536"], "argument WEIGHT: '65536' is not an integer from 1"),
        (["set-weight", "web1", "2x"], "argument WEIGHT: '2x' is not an integer"),
        (["set-weight", "web1", "\u0665"], "is not an integer"),  # an Arabic-Indic 5
        (["set-weight", "web1", "1_000"], "argument WEIGHT: '1_000' is not an integer"),
        (["set-weight", "web1", "+7"], "argument WEIGHT: '+7' is not an integer"),
        (["set-weight", "web1", "9" * 5000], "is not an integer from 1 to 65535"),
        (["set-weight", "", "5"], "argument DOMAIN: '' is not a domain name"),
        (["pin-dom0", "x"], "argument CPUS: 'x' is not a list of CPU numbers"),
        (["pin-dom0", "1-0"], "argument CPUS: '1-0' is not a list"),
        (["hold", "--reason", "r" * 201], "argument --reason: a reason is at most 200"),
        (["status", "--watch", "0"], "argument --watch: '0' is not a number of seconds"),
        (["set-weight", "web1"], "the following arguments are required: WEIGHT"),
        (["status", "--socket", ""], "argument --socket: must be a path, not empty"),
        (["status", "--config", ""], "argument --config: must be a path, not empty"),
    ],
)
def test_bad_input_is_a_usage_error_and_nothing_is_sent(
    server: ControlServer,
    daemon: FakeDaemon,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    fragment: str,
) -> None:
    code, out, err = run(capsys, *argv, "--socket", str(server.path))
    assert (code, out) == (2, "")
    assert fragment in err
    assert daemon.calls == []


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["resume"]])
def test_no_daemon_is_said_plainly(
    socket_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    path = socket_dir / "xvrd.sock"
    code, out, err = run(capsys, *argv, "--socket", str(path))
    assert (code, out, err) == (3, "", f"xvrd is not running (no daemon at {path})\n")


def test_a_stale_socket_means_not_running(
    socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = socket_dir / "xvrd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    code, _, err = run(capsys, "status", "--socket", str(path))
    assert code == 3
    assert "xvrd is not running" in err


def test_a_socket_path_too_long_for_unix_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "/tmp/" + "x" * 120 + ".sock"
    code, out, err = run(capsys, "status", "--socket", path)
    assert (code, out) == (2, "")
    assert err == (
        f"xvrd status: socket path {path}: longer than the 107 bytes a Unix socket path may have\n"
    )


def test_watch_refreshes_and_waits_out_a_missing_daemon(
    server: ControlServer, socket_dir: Path
) -> None:
    out = io.StringIO()
    sleeps: list[float] = []
    code = watch_status(
        ControlClient(str(server.path)),
        1.5,
        as_json=True,
        out=out,
        iterations=3,
        sleep=sleeps.append,
    )
    assert code == 0
    assert sleeps == [1.5, 1.5]
    decoder = json.JSONDecoder()
    text, documents = out.getvalue(), []
    position = 0
    while position < len(text.rstrip()):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
        position += 1
    assert documents == [sample_status()] * 3

    gone = watch_status(
        ControlClient(str(socket_dir / "nothing.sock")),
        1,
        out=io.StringIO(),
        iterations=2,
        sleep=lambda _s: None,
    )
    assert gone == 0


def test_an_unknown_argument_shows_the_commands_own_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "status", "extra")
    assert code == 2
    assert out == ""
    assert err.startswith("usage: xvrd status ")
    assert err.rstrip().endswith("xvrd status: error: unrecognized arguments: extra")
