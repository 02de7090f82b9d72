"""The client side of the control socket: the `ControlAPI`, spoken over the wire.

`ControlClient` implements the same Protocol the daemon does, so the CLI reads like a call
into the daemon, and a refusal arrives as the same `ControlError` the daemon raised. Two
failures are not the daemon's answer and get their own exceptions: no daemon at the path,
and no permission to reach the socket.
"""

from __future__ import annotations

import socket
from typing import Any

from xvrd.control import protocol
from xvrd.control.api import ControlError

DEFAULT_SOCKET_PATH = "/run/xvrd/xvrd.sock"
#: Environment variable that overrides the default socket path.
SOCKET_PATH_ENV = "XVRD_SOCKET_PATH"
#: Seconds to wait for an answer; a tick in progress holds the daemon for a fraction of this.
DEFAULT_TIMEOUT_S = 10.0


#: The longest path a Unix socket address holds (sun_path is 108 bytes, NUL included).
MAX_SOCKET_PATH_BYTES = 107


class DaemonNotRunning(Exception):
    """Nothing listens at the socket path (no file, or a stale socket)."""

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        super().__init__(
            f"xvrd is not running (no daemon at {path}{': ' + detail if detail else ''})"
        )


class SocketPermissionDenied(Exception):
    """The socket (or its directory) exists but this user may not connect to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"permission denied connecting to {path} "
            "(run as root or as a member of the socket's group)"
        )


class ControlClient:
    """One connection per call, as the protocol prescribes."""

    def __init__(self, path: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if len(path.encode()) > MAX_SOCKET_PATH_BYTES:
            raise ValueError(
                f"socket path {path}: longer than the {MAX_SOCKET_PATH_BYTES} bytes a Unix "
                "socket path may have"
            )
        self.path = path
        self.timeout_s = timeout_s

    def call(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request; the result, or the daemon's refusal raised as `ControlError`."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout_s)
            try:
                conn.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
                raise DaemonNotRunning(self.path) from None
            except PermissionError:
                raise SocketPermissionDenied(self.path) from None
            except TimeoutError:
                raise ControlError(
                    "unavailable",
                    f"the daemon did not accept the connection within {self.timeout_s:g} s",
                ) from None
            except OSError as exc:
                raise DaemonNotRunning(self.path, exc.strerror or str(exc)) from None
            try:
                conn.sendall(protocol.encode_request(command, args))
                raw = _read_response(conn)
            except TimeoutError:
                raise ControlError(
                    "unavailable", f"the daemon did not answer within {self.timeout_s:g} s"
                ) from None
            except (ConnectionResetError, BrokenPipeError):
                # A daemon that refuses the connection (too busy) answers and closes before
                # reading the request: its answer may still be there to read.
                raw = _answer_left(conn)
        return protocol.decode_response(raw)

    # --- the ControlAPI, over the wire ----------------------------------------------------

    def status(self) -> dict[str, Any]:
        result = self.call("status")
        if not isinstance(result, dict):
            raise ControlError("bad_request", "the daemon sent a status that is not an object")
        return result

    def set_weight(self, domain: str, weight: int) -> str:
        return str(self.call("set_weight", {"domain": domain, "weight": weight}))

    def unset(self, domain: str) -> str:
        return str(self.call("unset", {"domain": domain}))

    def pin_dom0(self, cpus: frozenset[int]) -> str:
        return str(self.call("pin_dom0", {"cpus": sorted(cpus)}))

    def unpin_dom0(self) -> str:
        return str(self.call("unpin_dom0"))

    def hold(self, reason: str) -> str:
        return str(self.call("hold", {"reason": reason}))

    def resume(self) -> str:
        return str(self.call("resume"))

    def restore(self) -> str:
        return str(self.call("restore"))


def _answer_left(conn: socket.socket) -> bytes:
    try:
        return _read_response(conn)
    except (OSError, ControlError):
        raise ControlError(
            "unavailable", "the daemon closed the connection without answering"
        ) from None


def _read_response(conn: socket.socket) -> bytes:
    buffer = bytearray()
    while b"\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > protocol.MAX_RESPONSE_BYTES:
            raise ControlError("bad_request", "the daemon's response is too large")
    if not buffer:
        raise ControlError("unavailable", "the daemon closed the connection without answering")
    return bytes(buffer.split(b"\n", 1)[0])
