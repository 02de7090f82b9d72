"""The only stage that changes the host: applies actions, remembering originals first.

Before the first change to any setting of a domain, its weight, cap and pinning are recorded
in the persisted state and the state is saved, so that a crash right after the change still
leaves enough on disk to put things back. Policy actions are skipped under hold, for a domain
with a manual weight, and for pinning while dom0 is pinned by hand; weights are clamped to the
host's range.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from xvrd.backends.base import Backend, DomainGone, Pinning, WeightRange
from xvrd.policy import Action, Setting
from xvrd.state import DaemonState, Original, StateStore

log = structlog.get_logger("xvrd.actuator")

Value = int | Pinning


@dataclass(frozen=True, slots=True)
class Applied:
    """A change made to the host (or, in advise mode, one the policy would have made)."""

    time: float
    uuid: str
    domain: str
    setting: Setting
    old: Value
    new: Value
    reason: str

    def to_json(self) -> dict[str, object]:
        def show(v: Value) -> object:
            return [sorted(c) for c in v.vcpus] if isinstance(v, Pinning) else v

        return {
            "time": self.time,
            "domain": self.domain,
            "setting": self.setting,
            "old": show(self.old),
            "new": show(self.new),
            "reason": self.reason,
        }


class Actuator:
    def __init__(
        self,
        backend: Backend,
        state: DaemonState,
        store: StateStore,
        weight_range: WeightRange,
        *,
        dry_run: bool = False,
    ) -> None:
        self.backend = backend
        self.state = state
        self.store = store
        self.weight_range = weight_range
        self.dry_run = dry_run

    def _current(self, uuid: str, setting: Setting) -> Value:
        if setting == "pinning":
            return self.backend.get_pinning(uuid)
        sched = self.backend.get_sched(uuid)
        return sched.weight if setting == "weight" else sched.cap

    def _remember(self, uuid: str, name: str) -> None:
        if uuid in self.state.originals:
            return
        sched = self.backend.get_sched(uuid)
        self.state.originals[uuid] = Original(
            name, sched.weight, sched.cap, self.backend.get_pinning(uuid)
        )
        self.store.save(self.state)

    def change(
        self,
        uuid: str,
        name: str,
        setting: Setting,
        value: Value,
        reason: str,
        *,
        dry_run: bool = False,
    ) -> Applied | None:
        """Set one setting if it differs; None when it already has that value.

        Raises `DomainGone`, `InvalidSetting`, `Unsupported`, `BackendUnavailable`.
        """
        if setting == "weight" and isinstance(value, int):
            value = self.weight_range.clamp(value)
        old = self._current(uuid, setting)
        if old == value:
            return None
        applied = Applied(time.time(), uuid, name, setting, old, value, reason)
        if dry_run:
            return applied
        self._remember(uuid, name)
        if setting == "weight" and isinstance(value, int):
            self.backend.set_weight(uuid, value)
        elif setting == "cap" and isinstance(value, int):
            self.backend.set_cap(uuid, value)
        elif setting == "pinning" and isinstance(value, Pinning):
            self.backend.set_pinning(uuid, value)
        else:
            raise TypeError(f"{setting} cannot be set to {value!r}")
        log.info(
            "setting changed",
            domain=name,
            setting=setting,
            old=str(old),
            new=str(value),
            reason=reason,
        )
        return applied

    def apply_policy(self, actions: tuple[Action, ...], names: dict[str, str]) -> list[Applied]:
        """Apply the policy's actions that no hold or override forbids."""
        if self.state.hold is not None:
            return []
        done = []
        for a in actions:
            if a.setting == "weight" and a.uuid in self.state.manual_weights:
                continue
            if a.setting == "pinning" and self.state.dom0_pin is not None:
                continue
            try:
                applied = self.change(
                    a.uuid,
                    names.get(a.uuid, a.uuid),
                    a.setting,
                    a.value,
                    a.reason,
                    dry_run=self.dry_run,
                )
            except DomainGone:
                continue
            if applied is not None:
                done.append(applied)
        return done

    def restore(
        self,
        uuids: list[str] | None = None,
        settings: tuple[Setting, ...] = ("weight", "cap", "pinning"),
    ) -> list[Applied]:
        """Put back original settings (all domains, or ``uuids``); forget what was restored.

        A domain no longer running is forgotten: its settings went with it.
        """
        present = {d.uuid for d in self.backend.list_domains()}
        done = []
        for uuid in list(self.state.originals if uuids is None else uuids):
            orig = self.state.originals.get(uuid)
            if orig is None:
                continue
            if uuid in present:
                targets: dict[Setting, Value] = {
                    "weight": orig.weight,
                    "cap": orig.cap,
                    "pinning": orig.pinning,
                }
                for setting in settings:
                    try:
                        applied = self.change(
                            uuid, orig.name, setting, targets[setting], "restore original"
                        )
                    except DomainGone:
                        break
                    if applied is not None:
                        done.append(applied)
            if uuid not in present or set(settings) == {"weight", "cap", "pinning"}:
                del self.state.originals[uuid]
        self.store.save(self.state)
        return done
