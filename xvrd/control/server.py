"""The control socket: a Unix stream socket, mode 0660, owned by the configured group.

Who may connect is decided by the file's mode and group; who may *change* settings is decided
per request from the peer's credentials (SO_PEERCRED): root, or a user whose primary or
supplementary group is the admin group. Each connection carries one request and one response.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from xvrd.control.api import ControlAPI, ControlError
from xvrd.control.protocol import dispatch, error, ok, parse_request

log = structlog.get_logger("xvrd.control")

SOCKET_MODE = 0o660
#: Seconds a client has to send its request.
REQUEST_TIMEOUT_S = 5.0


class SocketInUse(Exception):
    """Another daemon is already answering on the socket path."""


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def socket_in_use(path: Path) -> bool:
    """True when a daemon answers on ``path`` (a stale socket file does not count)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def peer_of(conn: socket.socket) -> Peer:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def group_id(name: str) -> int:
    """The gid of a group name; `KeyError` if it does not exist."""
    return grp.getgrnam(name).gr_gid


def is_admin(peer: Peer, admin_group: str | None) -> bool:
    """Root, or a member (primary or supplementary) of the admin group (None: root only)."""
    if peer.uid == 0:
        return True
    if not admin_group:
        return False
    try:
        g = grp.getgrnam(admin_group)
    except KeyError:
        return False
    if peer.gid == g.gr_gid:
        return True
    try:
        user = pwd.getpwuid(peer.uid).pw_name
    except KeyError:
        return False
    return user in g.gr_mem


#: Largest request accepted, in bytes; longer ones get a ``bad_request`` error.
MAX_REQUEST_BYTES = 64 * 1024


class ControlServer:
    """Serves `ControlAPI` on a Unix socket from a background thread started by `start`.

    ``socket_group`` owns the socket (None: the daemon's own group, root on a real host);
    ``admin_group`` may change settings besides root (None: root only).
    """

    def __init__(
        self,
        path: Path,
        api: ControlAPI,
        *,
        socket_group: str | None = None,
        admin_group: str | None = None,
        max_request: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.api = api
        self.path = path
        self.group = socket_group
        self.admin_group = admin_group
        self.max_request = max_request
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind (replacing a stale socket file), set mode and group, start serving."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if self.path.exists() or self.path.is_symlink():
            if socket_in_use(self.path):
                raise SocketInUse(f"another xvrd is listening on {self.path}")
            self.path.unlink()  # stale: nobody is listening
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o117)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        if self.group:
            os.chown(self.path, -1, group_id(self.group))
        os.chmod(self.path, SOCKET_MODE)
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="xvrd-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bytes:
        buf = bytearray()
        while b"\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > self.max_request:
                raise ControlError("bad_request", f"request longer than {self.max_request} bytes")
        return bytes(buf.split(b"\n", 1)[0])

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(REQUEST_TIMEOUT_S)
            try:
                peer = peer_of(conn)
                reply = self.answer(self._read_request(conn), peer)
                conn.sendall(reply)
            except (OSError, TimeoutError) as exc:
                log.debug("control connection dropped", error=str(exc))
            except ControlError as exc:  # oversized: answer, then drain so the peer can read
                with contextlib.suppress(OSError):
                    conn.sendall(error(exc))
                    conn.shutdown(socket.SHUT_WR)
                    self._drain(conn)

    def _drain(self, conn: socket.socket) -> None:
        """Read and drop what the client is still sending (bounded in bytes and time).

        Closing a Unix socket with unread data resets the connection, and the client would
        lose the error it was sent.
        """
        conn.settimeout(0.5)
        budget = 16 * self.max_request
        while budget > 0:
            chunk = conn.recv(65536)
            if not chunk:
                return
            budget -= len(chunk)

    def answer(self, raw: bytes, peer: Peer) -> bytes:
        """The response to one raw request from ``peer``; never raises for a bad request."""
        try:
            req = parse_request(raw)
            if req.is_change and not is_admin(peer, self.admin_group):
                log.warning("change refused", command=req.command, uid=peer.uid, pid=peer.pid)
                raise ControlError(
                    "forbidden",
                    "changing settings needs root"
                    + (f" or membership of group {self.admin_group!r}" if self.admin_group else ""),
                )
            return ok(dispatch(self.api, req))
        except ControlError as exc:
            return error(exc)
        except Exception as exc:  # a bug must not kill the server thread
            log.exception("control request failed", error=str(exc))
            return error(ControlError("internal", f"internal error: {exc}"))
