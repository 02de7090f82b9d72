"""The control loop: read the host, sample, assess, decide, act; and the control operations.

`Daemon.tick` is one pass of the loop and a plain callable: the live daemon calls it from an
APScheduler interval job (after letting a simulated clock catch up with wall time), a batch
runner calls it after advancing a simulated host by exactly one interval. It takes a lock, so
control-socket requests and ticks never interleave.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from xvrd.actuator import Actuator, Applied
from xvrd.analysis import Assessment, Finding, assess
from xvrd.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Domain,
    DomainGone,
    HostInfo,
    InvalidSetting,
    Pinning,
    Unsupported,
)
from xvrd.config import Settings
from xvrd.control.api import PROTOCOL_VERSION, ControlError
from xvrd.policy import NoopPolicy, Overrides, Policy, Setting
from xvrd.sampler import Observation, Sampler, read_host
from xvrd.state import DaemonState, Hold, ManualWeight, StateStore

log = structlog.get_logger("xvrd.daemon")

Notify = Callable[[str], object]


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did: whether the data was complete, and the changes made."""

    complete: bool
    applied: tuple[Applied, ...]
    observation: Observation | None
    assessment: Assessment | None


def _control_error(exc: BackendError) -> ControlError:
    if isinstance(exc, DomainGone):
        return ControlError("not_found", str(exc))
    if isinstance(exc, InvalidSetting):
        return ControlError("invalid", str(exc))
    if isinstance(exc, Unsupported):
        return ControlError("unsupported", str(exc))
    return ControlError("unavailable", str(exc))


class Daemon:
    """The loop's state and the `ControlAPI` operations over it."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        store: StateStore,
        *,
        policy: Policy | None = None,
        notify: Notify = lambda _msg: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.store = store
        self.policy: Policy = policy or NoopPolicy()
        self.policy_state = self.policy.initial_state()
        self.notify = notify
        self.monotonic = monotonic
        self.sampler = Sampler()
        self.state = DaemonState()
        self.info: HostInfo | None = None
        self.actuator: Actuator | None = None
        self.ticks = 0
        self.last_tick_at: float | None = None
        self.last_error: str | None = None
        self.observation: Observation | None = None
        self.assessment: Assessment | None = None
        self.findings: tuple[Finding, ...] = ()
        self.actions: deque[Applied] = deque(maxlen=settings.actions_kept)
        #: Each domain's settings as last read or changed (the observation's are pre-tick).
        self.current: dict[str, dict[str, int | Pinning]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load persisted state, connect, and reconcile after a crash.

        Raises `StateError` for an unreadable state file and `BackendError` when the host
        cannot be reached at start.
        """
        with self._lock:
            self.state = self.store.load()
            self.info = self.backend.info()
            self.actuator = Actuator(
                self.backend,
                self.state,
                self.store,
                self.info.weight_range,
                dry_run=self.settings.mode == "advise",
            )
            if not self.state.clean_exit and self.state.originals:
                self._reconcile()
            elif self.state.originals:
                log.info("keeping settings left by the last run", domains=len(self.state.originals))
            self.state.clean_exit = False
            self.store.save(self.state)
            self._enforce_overrides()

    def _reconcile(self) -> None:
        """After a crash: put back what the policy had changed; manual overrides stay."""
        assert self.actuator is not None
        restored = 0
        for uuid in list(self.state.originals):
            settings: tuple[Setting, ...] = tuple(
                s
                for s in ("weight", "cap", "pinning")
                if not (s == "weight" and uuid in self.state.manual_weights)
                and not (s == "pinning" and self.state.dom0_pin is not None)
            )
            restored += len(self.actuator.restore([uuid], settings))
        log.warning("reconciled after an unclean stop", settings_restored=restored)

    def stop(self) -> None:
        """Put back every changed setting unless ``restore_on_exit`` is false; save state."""
        with self._lock:
            if self.actuator is not None and self.settings.restore_on_exit:
                try:
                    done = self.actuator.restore()
                    self._record(done)
                    log.info("restored original settings", changes=len(done))
                except BackendError as exc:
                    log.error("could not restore original settings", error=str(exc))
                    self.store.save(self.state)
                    return  # not clean: the next start reconciles
            self.state.clean_exit = True
            self.store.save(self.state)

    # ------------------------------------------------------------------ the loop
    def tick(self) -> TickResult:
        """One pass of the loop at the host's current clock."""
        with self._lock:
            try:
                result = self._tick()
            except BackendUnavailable as exc:
                if self.last_error is None:
                    log.error("host unreachable", error=str(exc))
                self.last_error = str(exc)
                self.sampler.reset()
                return TickResult(False, (), None, None)
            if self.last_error is not None:
                log.info("host reachable again")
                self.last_error = None
            self.notify(f"WATCHDOG=1\nSTATUS={self._summary()}")
            return result

    def _tick(self) -> TickResult:
        assert self.info is not None
        assert self.actuator is not None
        clock, readings = read_host(self.backend)
        obs = self.sampler.observe(clock, readings, self.info.cpus)
        self.observation = obs
        self.current = {
            d.domain.uuid: {"weight": d.sched.weight, "cap": d.sched.cap, "pinning": d.pinning}
            for d in obs.domains
        }
        applied = self._enforce_overrides()
        if not obs.complete:
            self.assessment = None
            self._record(applied)
            return TickResult(False, tuple(applied), obs, None)
        a = self.settings.analysis
        assessment = assess(
            obs, link_goodput_mbps=a.link_goodput_mbps, nics=a.nics, active_mbps=a.active_mbps
        )
        self.assessment = assessment
        self._log_findings(assessment.findings)
        decision = self.policy.decide(obs, assessment, self.policy_state, self._overrides())
        self.policy_state = decision.state
        names = {d.domain.uuid: d.domain.name for d in obs.domains}
        applied += self.actuator.apply_policy(decision.actions, names)
        self._record(applied)
        self.ticks += 1
        self.last_tick_at = self.monotonic()
        return TickResult(True, tuple(applied), obs, assessment)

    def _record(self, applied: list[Applied]) -> None:
        """Remember changes for status, and keep the settings it shows current."""
        self.actions.extend(applied)
        for a in applied:
            if a.uuid in self.current:
                self.current[a.uuid] = {**self.current[a.uuid], a.setting: a.new}

    def _overrides(self) -> Overrides:
        return Overrides(
            manual_weights={u: m.weight for u, m in self.state.manual_weights.items()},
            dom0_pin=self.state.dom0_pin,
            held=self.state.hold is not None,
        )

    def _log_findings(self, findings: tuple[Finding, ...]) -> None:
        old = {f.kind for f in self.findings}
        new = {f.kind for f in findings}
        for f in findings:
            if f.kind not in old:
                log.warning("finding appeared", kind=f.kind, summary=f.summary, **f.evidence)
        for kind in old - new:
            log.info("finding cleared", kind=kind)
        self.findings = findings

    def _enforce_overrides(self) -> list[Applied]:
        """Keep manual settings in force (a rebooted domain comes back with its defaults)."""
        assert self.actuator is not None
        assert self.info is not None
        done: list[Applied] = []
        if not self.state.manual_weights and self.state.dom0_pin is None:
            return done
        domains = self.backend.list_domains()
        for d in domains:
            try:
                manual = self.state.manual_weights.get(d.uuid)
                if manual is not None:
                    a = self.actuator.change(
                        d.uuid, d.name, "weight", manual.weight, "manual weight"
                    )
                    done += [a] if a else []
                if self.state.dom0_pin is not None:
                    done += self._pin_one(d, self.state.dom0_pin)
            except DomainGone:
                continue
            except (InvalidSetting, Unsupported) as exc:
                log.error("cannot apply override", domain=d.name, error=str(exc))
        return done

    def _pin_one(self, d: Domain, dom0_cpus: frozenset[int]) -> list[Applied]:
        assert self.actuator is not None
        assert self.info is not None
        others = frozenset(range(self.info.cpus)) - dom0_cpus
        cpus = dom0_cpus if d.is_dom0 else others
        if not cpus:
            return []
        a = self.actuator.change(
            d.uuid, d.name, "pinning", Pinning((cpus,) * d.vcpus), "manual dom0 pinning"
        )
        return [a] if a else []

    def _summary(self) -> str:
        a = self.assessment
        hold = " (held)" if self.state.hold else ""
        if a is None:
            return f"waiting for complete data{hold}"
        jain = "n/a" if a.jain is None else f"{a.jain:.2f}"
        return f"aggregate {a.aggregate_mbps:.0f} Mb/s, Jain {jain}{hold}"

    # ------------------------------------------------------------------ control API
    def _resolve(self, name: str) -> Domain:
        try:
            domains = self.backend.list_domains()
        except BackendError as exc:
            raise _control_error(exc) from None
        for d in domains:
            if name in (d.name, d.uuid, str(d.domid)):
                return d
        raise ControlError("not_found", f"no running domain named {name!r}")

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._status()

    def _status(self) -> dict[str, Any]:
        info = self.info
        obs = self.observation
        a = self.assessment
        domains = []
        if obs is not None:
            for d in obs.domains:
                uuid = d.domain.uuid
                now = self.current.get(uuid, {})
                weight = now.get("weight", d.sched.weight)
                cap = now.get("cap", d.sched.cap)
                pinning = now.get("pinning", d.pinning)
                assert isinstance(pinning, Pinning)
                orig = self.state.originals.get(uuid)
                if uuid in self.state.manual_weights:
                    source = "manual"
                elif orig is not None and orig.weight != weight:
                    source = "auto"
                else:
                    source = "default"
                domains.append(
                    {
                        "name": d.domain.name,
                        "domid": d.domain.domid,
                        "uuid": uuid,
                        "weight": weight,
                        "weight_source": source,
                        "cap": cap,
                        "pinning": [sorted(c) for c in pinning.vcpus],
                        "rx_mbps": d.rx_mbps,
                        "tx_mbps": d.tx_mbps,
                        "cpu_pct": d.cpu_pct,
                        "network_active": a is not None and uuid in a.active_uuids,
                    }
                )
        hold = self.state.hold
        return {
            "version": PROTOCOL_VERSION,
            "backend": {
                "kind": info.kind if info else None,
                "uri": info.uri if info else None,
                "scheduler": info.scheduler if info else None,
                "cpus": info.cpus if info else None,
                "connected": self.last_error is None,
                "last_error": self.last_error,
            },
            "policy": self.policy.name,
            "interval_s": self.settings.interval_s,
            "mode": self.settings.mode,
            "ticks": self.ticks,
            "last_tick_age_s": None
            if self.last_tick_at is None
            else round(self.monotonic() - self.last_tick_at, 3),
            "hold": {
                "held": hold is not None,
                "reason": hold.reason if hold else None,
                "since": hold.since if hold else None,
            },
            "dom0_pin": None if self.state.dom0_pin is None else sorted(self.state.dom0_pin),
            "domains": domains,
            "dom0_cpu_pct": obs.dom0_cpu_pct if obs else None,
            "idle_pct": obs.idle_pct if obs else None,
            "aggregate_mbps": a.aggregate_mbps if a else None,
            "jain": a.jain if a else None,
            "efficiency": a.efficiency if a else None,
            "findings": [
                {"kind": f.kind, "summary": f.summary, "evidence": f.evidence}
                for f in self.findings
            ],
            "actions": [x.to_json() for x in self.actions],
        }

    def set_weight(self, domain: str, weight: int) -> str:
        with self._lock:
            assert self.actuator is not None
            assert self.info is not None
            r = self.info.weight_range
            if not r.contains(weight):
                raise ControlError(
                    "invalid", f"weight must be between {r.low} and {r.high} (got {weight})"
                )
            d = self._resolve(domain)
            try:
                a = self.actuator.change(d.uuid, d.name, "weight", weight, "manual weight")
            except BackendError as exc:
                raise _control_error(exc) from None
            self._record([a] if a else [])
            self.state.manual_weights[d.uuid] = ManualWeight(d.name, weight)
            self.store.save(self.state)
            log.info("override set", domain=d.name, weight=weight)
            return f"{d.name}: weight {weight} (manual)"

    def unset(self, domain: str) -> str:
        with self._lock:
            assert self.actuator is not None
            d = self._resolve(domain)
            if self.state.manual_weights.pop(d.uuid, None) is None:
                raise ControlError("not_found", f"{d.name} has no manual weight")
            try:
                self._record(self.actuator.restore([d.uuid], ("weight",)))
            except BackendError as exc:
                raise _control_error(exc) from None
            log.info("override removed", domain=d.name)
            return f"{d.name}: manual weight removed, original weight put back"

    def pin_dom0(self, cpus: frozenset[int]) -> str:
        with self._lock:
            assert self.info is not None
            if not self.info.supports_dom0_pinning:
                raise ControlError("unsupported", "this host cannot pin dom0")
            if not cpus or any(c < 0 or c >= self.info.cpus for c in cpus):
                raise ControlError(
                    "invalid", f"CPUs must be a non-empty subset of 0..{self.info.cpus - 1}"
                )
            self.state.dom0_pin = cpus
            self.store.save(self.state)
            try:
                self._record(self._enforce_overrides())
            except BackendError as exc:
                raise _control_error(exc) from None
            log.info("override set", dom0_pin=sorted(cpus))
            return f"dom0 pinned to CPUs {','.join(map(str, sorted(cpus)))}"

    def unpin_dom0(self) -> str:
        with self._lock:
            assert self.actuator is not None
            if self.state.dom0_pin is None:
                raise ControlError("not_found", "dom0 is not pinned by xvrd")
            self.state.dom0_pin = None
            try:
                self._record(self.actuator.restore(None, ("pinning",)))
            except BackendError as exc:
                raise _control_error(exc) from None
            log.info("override removed", dom0_pin=None)
            return "dom0 unpinned, original pinning put back"

    def hold(self, reason: str) -> str:
        with self._lock:
            self.state.hold = Hold(reason or "held by operator", time.time())
            self.store.save(self.state)
            log.info("hold", reason=self.state.hold.reason)
            return "automatic changes held"

    def resume(self) -> str:
        with self._lock:
            was = self.state.hold is not None
            self.state.hold = None
            self.store.save(self.state)
            if was:
                log.info("resumed")
            return "automatic changes resumed" if was else "was not held"

    def restore(self) -> str:
        with self._lock:
            assert self.actuator is not None
            self.state.manual_weights.clear()
            self.state.dom0_pin = None
            self.state.hold = Hold("restore", time.time())
            try:
                done = self.actuator.restore()
            except BackendError as exc:
                raise _control_error(exc) from None
            self._record(done)
            log.info("restored original settings", changes=len(done))
            return f"{len(done)} setting(s) put back; automatic changes held"
