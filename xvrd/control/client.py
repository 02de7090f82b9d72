"""The client side of the control socket, used by `xvrd status` and the override commands."""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path
from typing import Any

from xvrd.control.api import ControlError
from xvrd.control.protocol import encode_request


class NotRunning(Exception):
    """No daemon answers on the socket."""


class NoPermission(Exception):
    """The socket exists but this user may not open it."""


def call(path: Path, command: str, timeout_s: float = 10.0, **args: Any) -> Any:
    """Send one request; the result, or `ControlError` with the daemon's refusal."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"xvrd is not running (nothing answers on {path})") from None
        except PermissionError:
            raise NoPermission(
                f"permission denied on {path}: status needs membership of the socket's group"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                raise NotRunning(f"xvrd is not running (nothing answers on {path})") from None
            raise
        s.sendall(encode_request(command, **args))
        buf = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise NotRunning(f"xvrd closed the connection on {path} without answering")
    reply = json.loads(buf)
    if not reply.get("ok"):
        err = reply.get("error", {})
        raise ControlError(str(err.get("code")), str(err.get("message")))
    return reply.get("result")
