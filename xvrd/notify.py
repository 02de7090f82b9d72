"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING datagrams.

The protocol is one datagram to the socket named by $NOTIFY_SOCKET (an abstract socket when
it starts with '@'). A dozen lines here instead of a dependency: the PyPI wrappers are either
unmaintained or need libsystemd's headers to build.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") to systemd; False when not run under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_interval_s() -> float | None:
    """How often systemd expects WATCHDOG=1, or None if the watchdog is off for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None


class TickWatchdog:
    """Decides when to pet systemd's watchdog: every half period, unless a tick has been
    running for a whole period. Petting from the main loop rather than after each tick keeps
    the daemon alive with an interval longer than the watchdog, while a hung tick still stops
    the petting and gets the service restarted."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._tick_started: float | None = None
        self._last_pet = float("-inf")

    def tick_started(self, now: float) -> None:
        self._tick_started = now

    def tick_finished(self) -> None:
        self._tick_started = None

    def due(self, now: float) -> bool:
        """True when WATCHDOG=1 should be sent now (and records that it was)."""
        started = self._tick_started
        if started is not None and now - started >= self.period_s:
            return False  # the tick is hung: let systemd see it
        if now - self._last_pet < self.period_s / 2:
            return False
        self._last_pet = now
        return True
