"""The control socket server: authenticates each request and hands it to the daemon's ControlAPI.

Who may do what is decided twice, by two different mechanisms:

- *Connecting* is gated by the file system: the socket is mode 0660 and, when a socket group is
  configured, belongs to that group (so does its directory, when the server owns it). Anyone who
  can connect may read ``status``.
- *Changing* anything needs uid 0 or membership of the admin group, checked per request against
  the peer's credentials (SO_PEERCRED), which the kernel fills in and a client cannot forge.

Connections are served on short-lived threads so a slow client cannot hold up others, but calls
into the API are serialised with one lock: the daemon behind it is single-threaded.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import selectors
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from xvrd.control import protocol
from xvrd.control.api import ControlAPI, ControlError

log = structlog.get_logger()

#: Mode of the socket file: owner and group may connect, nobody else.
SOCKET_MODE = 0o660
#: Mode of the socket's directory when the server creates it.
DIRECTORY_MODE = 0o750
#: Connections served at once; more are closed at once (a flood cannot exhaust threads).
MAX_CONNECTIONS = 16
#: More connections for peers that may change settings once those are taken: idle
#: connections from members of socket_group cannot lock an operator's hold or restore out.
ADMIN_CONNECTIONS = 4
#: Seconds a response may take to send before the client is given up on.
SEND_TIMEOUT_S = 5.0

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class SocketSetupError(Exception):
    """The control socket cannot be created as configured (bad group, path in use, ...)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of a connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int


def peer_credentials(conn: socket.socket) -> Peer:
    pid, uid, gid = _PEERCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return Peer(pid=pid, uid=uid, gid=gid)


def may_change(peer: Peer, admin_group: str | None) -> bool:
    """Root, or a member of ``admin_group``: primary group of the peer's uid, its supplementary
    groups as listed in the group database, or the gid the peer connected with.

    Looked up per request, so adding an operator to the group needs no daemon restart.
    """
    if peer.uid == 0:
        return True
    if admin_group is None:
        return False
    try:
        group = grp.getgrnam(admin_group)
    except KeyError:
        return False
    if peer.gid == group.gr_gid:
        return True
    try:
        user = pwd.getpwuid(peer.uid)
    except KeyError:
        return False
    return user.pw_gid == group.gr_gid or user.pw_name in group.gr_mem


class _RequestTooLarge(Exception):
    pass


class ControlServer:
    """Serves the control protocol on a Unix socket until `close`.

    Construction only checks the configuration; `bind` creates the socket, `start` (binding
    first if need be) the serving thread (no thread is started from ``__init__``). Use as a
    context manager, or call `start` and `close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        api: ControlAPI,
        socket_group: str | None = None,
        admin_group: str | None = None,
        *,
        read_timeout_s: float = protocol.READ_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
        admin_connections: int = ADMIN_CONNECTIONS,
    ) -> None:
        self.path = Path(path)
        self._api = api
        self._admin_group = admin_group
        self._read_timeout_s = read_timeout_s
        self._socket_gid = _group_id(socket_group) if socket_group is not None else None
        self._api_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._admin_slots = threading.BoundedSemaphore(admin_connections)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._socket_inode: int | None = None
        self._wake_r, self._wake_w = -1, -1
        self._accept_thread: threading.Thread | None = None
        self._conns_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        if admin_group is not None:
            try:
                grp.getgrnam(admin_group)
            except KeyError:
                log.warning("admin group does not exist", admin_group=admin_group)

    # --- lifecycle -------------------------------------------------------------------------

    def bind(self) -> None:
        """Create the socket; a client connecting waits in its backlog until `start`. The
        daemon binds before it touches the host, so a socket path that cannot be used is
        refused with the host as it was."""
        if self._listener is None:
            self._listener = self._bind()

    def start(self) -> None:
        """Create the socket if `bind` has not, and start serving in a background thread."""
        if self._accept_thread is not None:
            raise RuntimeError("control server already started")
        self.bind()
        self._wake_r, self._wake_w = os.pipe()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="xvrd-control", daemon=True
        )
        self._accept_thread.start()
        log.info("control socket listening", path=str(self.path))

    def close(self) -> None:
        """Stop accepting, cut open connections, and remove the socket; returns promptly."""
        if self._listener is None or self._stopping.is_set():
            return
        self._stopping.set()
        if self._accept_thread is not None:
            os.write(self._wake_w, b"x")
            self._accept_thread.join(timeout=5)
        with self._conns_lock:
            open_conns = list(self._conns.items())
        for conn, _thread in open_conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _conn, thread in open_conns:
            thread.join(timeout=5)
        self._listener.close()
        if self._accept_thread is not None:
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._remove_socket_file()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- socket file -----------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        self._prepare_directory()
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            # Mode and group are set before listen(): until then a connect is refused, so
            # there is no moment when the socket is reachable with the wrong permissions.
            os.chmod(self.path, SOCKET_MODE)
            if self._socket_gid is not None:
                os.chown(self.path, -1, self._socket_gid)
            self._socket_inode = os.stat(self.path).st_ino
            listener.listen(MAX_CONNECTIONS)
        except OSError as exc:
            listener.close()
            raise SocketSetupError(f"cannot create control socket {self.path}: {exc}") from exc
        return listener

    def _prepare_directory(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            info = directory.stat()
        except OSError as exc:
            raise SocketSetupError(f"cannot create socket directory {directory}: {exc}") from exc
        # The socket group must be able to reach the socket. Only a private directory of the
        # daemon's own (its RuntimeDirectory, 0750) is re-grouped: one that others may enter
        # anyway (/run, /tmp) needs no change and must not get one.
        private = not info.st_mode & (stat.S_IXOTH | stat.S_IWOTH)
        if self._socket_gid is not None and info.st_uid == os.geteuid() and private:
            try:
                os.chown(directory, -1, self._socket_gid)
                os.chmod(directory, stat.S_IMODE(info.st_mode) | stat.S_IXGRP)
            except OSError as exc:
                raise SocketSetupError(
                    f"cannot give socket directory {directory} to the socket group: {exc}"
                ) from exc

    def _remove_stale_socket(self) -> None:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise SocketSetupError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("stale control socket removed", path=str(self.path))
            self.path.unlink(missing_ok=True)
            return
        except OSError as exc:
            raise SocketSetupError(f"cannot check existing socket {self.path}: {exc}") from exc
        finally:
            probe.close()
        raise SocketSetupError(f"another process is listening on {self.path}; is xvrd running?")

    def _remove_socket_file(self) -> None:
        # Only remove the file we created: a successor may already have bound a new one.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._socket_inode:
                self.path.unlink()

    # --- serving ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _events in selector.select():
                    if key.fileobj is self._listener and not self._stopping.is_set():
                        self._accept_one()

    def _accept_one(self) -> None:
        assert self._listener is not None
        try:
            conn, _addr = self._listener.accept()
        except OSError:
            return
        slots = self._slots
        if not slots.acquire(blocking=False):
            slots = self._admin_slots
            if not (self._may_change(conn) and slots.acquire(blocking=False)):
                log.warning("control request refused", reason="too many connections")
                self._refuse_busy(conn)
                return
        thread = threading.Thread(
            target=self._serve_connection,
            args=(conn, slots),
            name="xvrd-control-conn",
            daemon=True,
        )
        with self._conns_lock:
            self._conns[conn] = thread
        thread.start()

    def _may_change(self, conn: socket.socket) -> bool:
        try:
            return may_change(peer_credentials(conn), self._admin_group)
        except OSError:
            return False

    @staticmethod
    def _refuse_busy(conn: socket.socket) -> None:
        """Say why before closing: the client reports it instead of a connection closed
        without an answer. A fresh socket's buffer takes the few bytes at once."""
        with conn, contextlib.suppress(OSError):
            conn.settimeout(0.1)
            conn.sendall(
                protocol.encode_error(
                    ControlError("unavailable", "too many connections to the daemon; try again")
                )
            )

    def _serve_connection(self, conn: socket.socket, slots: threading.BoundedSemaphore) -> None:
        try:
            with conn:
                peer = peer_credentials(conn)
                response = self._handle(conn, peer)
                if response is not None:
                    conn.settimeout(SEND_TIMEOUT_S)
                    with contextlib.suppress(OSError):
                        conn.sendall(response)
        except OSError:
            pass
        except Exception:
            # A bug, not the client's doing: logged as one event (JSON for journald), not a
            # bare thread traceback on stderr; the daemon and its other clients go on.
            log.exception("control connection failed")
        finally:
            with self._conns_lock:
                self._conns.pop(conn, None)
            slots.release()

    def _handle(self, conn: socket.socket, peer: Peer) -> bytes | None:
        """The response to send, or None when the connection is to be dropped unanswered."""
        try:
            raw = self._read_request(conn)
        except _RequestTooLarge:
            log.warning(
                "control request refused", reason="request too large", uid=peer.uid, pid=peer.pid
            )
            return protocol.encode_error(
                ControlError(
                    "bad_request", f"request larger than {protocol.MAX_REQUEST_BYTES} bytes"
                )
            )
        except TimeoutError:
            log.warning(
                "control request refused", reason="request too slow", uid=peer.uid, pid=peer.pid
            )
            return protocol.encode_error(
                ControlError("bad_request", f"request not complete in {self._read_timeout_s} s")
            )
        if raw is None:
            return None
        try:
            if not raw.strip():
                raise ControlError("bad_request", "empty request")
            request = protocol.decode_request(raw)
        except ControlError as error:
            log.warning("control request refused", reason=error.message, uid=peer.uid, pid=peer.pid)
            return protocol.encode_error(error)
        if request.is_change and not may_change(peer, self._admin_group):
            log.warning(
                "control request refused",
                reason="forbidden",
                command=request.command,
                uid=peer.uid,
                pid=peer.pid,
            )
            who = "root" if self._admin_group is None else f"root or group {self._admin_group}"
            return protocol.encode_error(
                ControlError("forbidden", f"only {who} may change settings")
            )
        if request.is_change:
            log.info(
                "control change requested", command=request.command, uid=peer.uid, pid=peer.pid
            )
        return self._call(request)

    def _read_request(self, conn: socket.socket) -> bytes | None:
        """Bytes up to the first newline or the end of the client's writes, within one deadline
        for the whole request (a client trickling a byte at a time is still cut off)."""
        deadline = time.monotonic() + self._read_timeout_s
        buffer = bytearray()
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            conn.settimeout(remaining)
            chunk = conn.recv(8192)
            if not chunk:
                if self._stopping.is_set() or not buffer:
                    # Closed without a byte: a probe (a second xvrd checking whether one
                    # listens), not a request; nothing to answer or warn about.
                    return None
                break
            buffer += chunk
            if len(buffer) > protocol.MAX_REQUEST_BYTES + 1:
                raise _RequestTooLarge
        line = bytes(buffer.split(b"\n", 1)[0])
        if len(line) > protocol.MAX_REQUEST_BYTES:
            raise _RequestTooLarge
        return line

    def _call(self, request: protocol.Request) -> bytes:
        try:
            with self._api_lock:
                result = _dispatch(self._api, request)
            return protocol.encode_result(result)
        except ControlError as error:
            return protocol.encode_error(error)
        except Exception:
            log.exception("control request failed", command=request.command)
            return protocol.encode_error(
                ControlError("unavailable", "the daemon failed to handle the request; see its log")
            )


def _dispatch(api: ControlAPI, request: protocol.Request) -> Any:
    args = request.args
    match request.command:
        case "status":
            return api.status()
        case "set_weight":
            return api.set_weight(args["domain"], args["weight"])
        case "unset":
            return api.unset(args["domain"])
        case "pin_dom0":
            return api.pin_dom0(args["cpus"])
        case "unpin_dom0":
            return api.unpin_dom0()
        case "hold":
            return api.hold(args["reason"])
        case "resume":
            return api.resume()
        case "restore":
            return api.restore()
    raise ControlError("bad_request", f"unknown command {request.command!r}")


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise SocketSetupError(f"socket group {name!r} does not exist") from None
