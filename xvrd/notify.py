"""sd_notify: tell systemd we are ready, how we are doing, and that we are alive.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading ``@`` means the abstract namespace). Without the variable (not run
by systemd with Type=notify) it does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message``; True if it was sent, False when there is no notify socket."""
    addr = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(addr)
        s.sendall(message.encode())
    return True


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """systemd's WatchdogSec for this process, or None when no watchdog is set."""
    e = os.environ if env is None else env
    usec = e.get("WATCHDOG_USEC")
    pid = e.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None
