"""A fake daemon behind a real control socket, for server and CLI tests."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from xvrd.control.api import PROTOCOL_VERSION, ControlError
from xvrd.control.server import ControlServer

DOMAINS = ("Domain-0", "web1", "web2")


def sample_status() -> dict[str, Any]:
    """A status document after a few ticks: every field filled in."""
    return {
        "version": PROTOCOL_VERSION,
        "backend": {
            "kind": "simulator",
            "uri": "sim://receive-3",
            "scheduler": "credit",
            "cpus": 2,
            "connected": True,
            "last_error": None,
        },
        "interval_s": 2.0,
        "mode": "auto",
        "ticks": 7,
        "last_tick_age_s": 0.4,
        "hold": {"held": False, "reason": "", "since": None},
        "dom0_pin": None,
        "domains": [
            {
                "name": "Domain-0",
                "domid": 0,
                "uuid": "00000000-0000-0000-0000-000000000000",
                "weight": 2048,
                "weight_source": "auto",
                "cap": 0,
                "pinning": [[0, 1], [0, 1]],
                "rx_mbps": None,
                "tx_mbps": None,
                "cpu_pct": 61.5,
                "network_active": False,
            },
            {
                "name": "web1",
                "domid": 1,
                "uuid": "11111111-1111-1111-1111-111111111111",
                "weight": 512,
                "weight_source": "manual",
                "cap": 0,
                "pinning": [[1]],
                "rx_mbps": 471.25,
                "tx_mbps": 3.5,
                "cpu_pct": 17.0,
                "network_active": True,
            },
        ],
        "dom0_cpu_pct": 61.5,
        "idle_pct": 4.2,
        "aggregate_mbps": 941.0,
        "jain": 0.987,
        "efficiency": 0.96,
        "overrides": [
            {"name": "web1", "uuid": "u-web1", "weight": 512, "running": True},
            {"name": "old9", "uuid": "u-old9", "weight": 4000, "running": False},
        ],
        "findings": [{"kind": "unfair_rx", "summary": "Jain 0.48 over 8 domUs", "evidence": {}}],
        "actions": [
            {
                "time": "2026-11-25T06:00:02Z",
                "domain": "Domain-0",
                "setting": "weight",
                "old": 256,
                "new": 2048,
                "reason": "dom0 starved: rx unfair",
            }
        ],
    }


class FakeDaemon:
    """A ControlAPI that records every call and notes if two calls ever overlap."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.call_seconds = 0.0
        self.overlapped = False
        self.fail_with: Exception | None = None
        self._inside = 0
        self._lock = threading.Lock()

    def _enter(self, name: str, *args: Any) -> None:
        with self._lock:
            self._inside += 1
            if self._inside > 1:
                self.overlapped = True
        try:
            if self.call_seconds:
                time.sleep(self.call_seconds)
            if self.fail_with is not None:
                raise self.fail_with
            self.calls.append((name, args))
        finally:
            with self._lock:
                self._inside -= 1

    def _known(self, domain: str) -> None:
        if domain not in DOMAINS:
            raise ControlError("not_found", f"no domain {domain!r}")

    def status(self) -> dict[str, Any]:
        self._enter("status")
        return sample_status()

    def set_weight(self, domain: str, weight: int) -> str:
        self._known(domain)
        self._enter("set_weight", domain, weight)
        return f"{domain}: weight {weight} (manual)"

    def unset(self, domain: str) -> str:
        self._known(domain)
        self._enter("unset", domain)
        return f"{domain}: weight back to automatic"

    def pin_dom0(self, cpus: frozenset[int]) -> str:
        self._enter("pin_dom0", cpus)
        return f"dom0 pinned to {sorted(cpus)}"

    def unpin_dom0(self) -> str:
        self._enter("unpin_dom0")
        return "dom0 unpinned"

    def hold(self, reason: str) -> str:
        self._enter("hold", reason)
        return "held"

    def resume(self) -> str:
        self._enter("resume")
        return "resumed"

    def restore(self) -> str:
        self._enter("restore")
        return "restored; held"

    def changes(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [c for c in self.calls if c[0] != "status"]


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[structlog.typing.EventDict]]:
    """The server's log events, captured instead of printed among the CLI's output."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory under /tmp (a Unix socket path must fit in 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="xvrd-ctl-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
def server(socket_dir: Path, daemon: FakeDaemon) -> Iterator[ControlServer]:
    with ControlServer(socket_dir / "run" / "xvrd.sock", daemon, read_timeout_s=0.5) as running:
        yield running
