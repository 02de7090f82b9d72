"""The daemon's persisted state: originals, manual overrides, hold. Written atomically.

The file survives restarts and crashes. ``originals`` holds each domain's settings as they
were before xvrd first changed any of them (by UUID, which survives domain reboots); it is
what `restore` puts back. ``clean_exit`` tells the next start whether the last run ended
normally or crashed (then it reconciles).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xvrd.backends.base import Pinning

STATE_VERSION = 1
STATE_FILE = "state.json"


class StateError(Exception):
    """The state file exists but cannot be read or understood."""


@dataclass(slots=True)
class Original:
    """A domain's settings before xvrd first changed them."""

    name: str
    weight: int
    cap: int
    pinning: Pinning

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "cap": self.cap,
            "pinning": [sorted(c) for c in self.pinning.vcpus],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Original:
        return cls(
            name=str(data["name"]),
            weight=int(data["weight"]),
            cap=int(data["cap"]),
            pinning=Pinning(tuple(frozenset(int(c) for c in v) for v in data["pinning"])),
        )


@dataclass(slots=True)
class Hold:
    reason: str
    since: float  # Unix time


@dataclass(slots=True)
class ManualWeight:
    name: str  # for people reading status; the UUID is the key
    weight: int


@dataclass(slots=True)
class DaemonState:
    originals: dict[str, Original] = field(default_factory=dict)
    manual_weights: dict[str, ManualWeight] = field(default_factory=dict)
    dom0_pin: frozenset[int] | None = None
    hold: Hold | None = None
    clean_exit: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "clean_exit": self.clean_exit,
            "originals": {u: o.to_json() for u, o in self.originals.items()},
            "manual_weights": {
                u: {"name": m.name, "weight": m.weight} for u, m in self.manual_weights.items()
            },
            "dom0_pin": None if self.dom0_pin is None else sorted(self.dom0_pin),
            "hold": None
            if self.hold is None
            else {"reason": self.hold.reason, "since": self.hold.since},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaemonState:
        if data.get("version") != STATE_VERSION:
            raise StateError(f"state version {data.get('version')!r}, expected {STATE_VERSION}")
        hold = data.get("hold")
        pin = data.get("dom0_pin")
        return cls(
            originals={u: Original.from_json(o) for u, o in data["originals"].items()},
            manual_weights={
                u: ManualWeight(str(m["name"]), int(m["weight"]))
                for u, m in data["manual_weights"].items()
            },
            dom0_pin=None if pin is None else frozenset(int(c) for c in pin),
            hold=None if hold is None else Hold(str(hold["reason"]), float(hold["since"])),
            clean_exit=bool(data.get("clean_exit", True)),
        )


class StateStore:
    """Reads and atomically writes the state file in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def load(self) -> DaemonState:
        """The saved state, or a fresh one if there is no file yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return DaemonState()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc}") from None
        try:
            return DaemonState.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{self.path}: not a valid state file: {exc}") from None

    def save(self, state: DaemonState) -> None:
        """Write to a temporary file, fsync, rename over the old one, fsync the directory."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".state-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state.to_json(), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
