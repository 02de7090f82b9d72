"""The daemon: one control-loop tick, the operator's overrides, and what status shows.

A tick samples the host, assesses a complete observation, asks the policy, and applies what
the policy decided unless the operator's overrides or hold forbid it. The operator's
commands (through `xvrd.control.api.ControlAPI`) and ticks are serialised by one lock, so
the control socket's thread and the scheduler's thread never interleave changes.

Scheduling is not here: `xvrd.service` runs `tick` from an APScheduler interval job; batch
experiments call it after advancing a simulated host by one interval. Same code either way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import structlog

from xvrd.actuator import ActionRecord, Actuator, pinning_lists, pinning_text
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
from xvrd.config import Settings, frame_mbps
from xvrd.control.api import PROTOCOL_VERSION, ControlError
from xvrd.control.protocol import format_cpu_list
from xvrd.policy.base import (
    Action,
    NoopPolicy,
    Policy,
    PolicyContext,
    SetPinning,
    SetWeight,
    Verdict,
)
from xvrd.ranges import parse_number
from xvrd.sampler import DomainRates, Observation, Sampler
from xvrd.state import Hold, Override, PersistedState, StateError, StateStore, now_iso

log = structlog.get_logger("xvrd.daemon")

#: How many verdicts on tried changes status keeps.
VERDICT_HISTORY = 20
#: Reconnect delays after the host became unreachable: doubling up to a minute.
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 60.0
#: Domain IDs below Xen's reserved ones (DOMID_FIRST_RESERVED, 0x7FF0).
DOMID_MAX = 0x7FEF


class Daemon:
    """The control loop's state and the operations the control socket offers."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        policy: Policy | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.policy: Policy = policy or NoopPolicy()
        self.monotonic = monotonic
        self.store = StateStore(settings.state_dir)
        self.state = self.store.load()
        self.host: HostInfo = backend.info()
        self.sampler = Sampler(backend)
        self.actuator = Actuator(
            backend, self.store, self.state, self.host.weight_range, monotonic=monotonic
        )
        self.lock = threading.RLock()
        self.policy_state: Any = None
        self.observation: Observation | None = None
        self.assessment: Assessment | None = None
        self.findings: tuple[Finding, ...] = ()
        self.verdicts: deque[tuple[str, Verdict]] = deque(maxlen=VERDICT_HISTORY)
        self.ticks = 0
        self.last_tick_at: float | None = None
        self.connected = True
        self.last_error: str | None = None
        self._retry_at = 0.0
        self._retry_delay = RECONNECT_FIRST_S
        self._reconnected_at: float | None = None  # when the last reconnect succeeded

    # ------------------------------------------------------------------ lifecycle
    def reconcile(self) -> None:
        """Make the host agree with the persisted state (after a restart or a crash).

        Originals still recorded mean an earlier run changed settings and did not restore
        them: they stay recorded, so the next restore puts them back. Manual overrides and a
        manual dom0 pinning are applied again. Originals of domains the host says no longer
        run are forgotten, and so are all of them after a host reboot: xvrd's settings are
        live only, so the reboot put the originals back, and restoring a previous boot's (a
        pinning to CPUs that are now numbered differently) would do harm.
        """
        with self.lock:
            boot = self.host.boot_id
            rebooted = 0
            if boot and self.state.boot_id and boot != self.state.boot_id:
                rebooted = len(self.state.originals)
                if rebooted:
                    log.warning(
                        "host rebooted since the originals were recorded: forgetting them",
                        originals=rebooted,
                    )
                self.state.originals.clear()
            if boot:
                self.state.boot_id = boot
            live = {d.uuid: d for d in self.backend.list_domains()}
            gone = [u for u in self.state.originals if u not in live and self._gone(u)]
            for uuid in gone:
                del self.state.originals[uuid]
            self._settle_legacy()
            self._apply_overrides(live.values(), "manual override (restart)")
            if self.state.dom0_pin:
                pin = frozenset(self.state.dom0_pin)
                refusal = self._dom0_pin_refusal(pin)
                if refusal is None:
                    self._apply_dom0_pin(pin, list(live.values()))
                else:
                    # CPUs taken offline since, or a host that cannot pin: the override
                    # cannot hold, and keeping it would stop every start.
                    log.warning(
                        "manual dom0 pinning dropped: it no longer fits the host",
                        dom0_pin=sorted(pin),
                        online=format_cpu_list(self.host.cpu_ids),
                        reason=refusal.message,
                    )
                    self.state.dom0_pin = None
            self.store.save(self.state)
            log.info(
                "reconciled with saved state",
                originals=len(self.state.originals),
                overrides=len(self.state.overrides),
                dom0_pin=self.state.dom0_pin,
                held=self.state.hold is not None,
                forgotten=rebooted + len(gone),
            )

    def _settle_legacy(self) -> None:
        """Originals from a version 1 file noted no values: what each domain has now that
        differs from them is taken as xvrd's, as that version took it, and from here on
        changes are noted as usual, so one the operator makes now is not taken for xvrd's.
        A domain unreadable now stays legacy until the next start or its restore."""
        for uuid, original in list(self.state.originals.items()):
            if not original.legacy:
                continue
            try:
                weight = self.backend.get_sched(uuid).weight
                pinning = pinning_lists(self.backend.get_pinning(uuid))
            except BackendUnavailable:
                raise
            except BackendError:
                continue
            self.state.originals[uuid] = original.settled(weight, pinning)

    def _gone(self, uuid: str) -> bool:
        """The domain no longer runs, as the host says when asked for it by UUID. Not being
        listed is not enough: libvirt leaves out a domain it could not read at that moment
        (libxl busy with it), and forgetting its original would leave xvrd's settings on it
        for good."""
        try:
            self.backend.get_sched(uuid)
        except DomainGone:
            return True
        except BackendUnavailable:
            raise
        except BackendError as exc:
            log.warning(
                "domain not listed and not readable: its original stays recorded",
                uuid=uuid,
                domain=self.state.originals[uuid].name,
                error=str(exc),
            )
        return False

    def shutdown(self) -> list[ActionRecord]:
        """Stop: restore originals unless told not to. Returns what was put back."""
        with self.lock:
            records: list[ActionRecord] = []
            if self.settings.restore_on_exit and self.state.originals:
                records = self._restore_at_exit()
            log.info("stopped", restored=len(records), kept=len(self.state.originals))
            self.backend.close()
            return records

    def _restore_at_exit(self) -> list[ActionRecord]:
        """Every original back. A host lost meanwhile (libvirtd restarted by a package
        upgrade) is connected to once more now, backoff or not, and so is one lost halfway
        through: the stop is the last chance to put the settings back before the next start.
        """
        for attempt in range(2):
            if (attempt or not self.connected) and not self._connect():
                break
            try:
                records, _ = self.actuator.restore_all("daemon stopping")
            except BackendUnavailable as exc:
                self._lost(exc)  # what went back before it is in the log, not in the count
                continue
            except (BackendError, StateError) as exc:
                log.error("could not restore settings at exit", error=str(exc))
                return []
            return records
        log.error(
            "could not restore settings at exit: the host is unreachable; they stay as xvrd "
            "set them, recorded for the next start to put back when it stops",
            error=self.last_error,
            kept=len(self.state.originals),
        )
        return []

    def _connect(self) -> bool:
        """Connect again and re-read the host; False, the error recorded, if it cannot.
        The stop uses it as it is: the reconcile a reconnect in the loop adds would apply
        overrides only to put them back, and one domain failing there would stop the
        restore."""
        reconnect = getattr(self.backend, "reconnect", None)
        try:
            if callable(reconnect):
                reconnect()
            self.host = self.backend.info()
        except BackendError as exc:
            self.last_error = str(exc)
            return False
        self.connected = True
        return True

    # ------------------------------------------------------------------ the tick
    def tick(self) -> Observation | None:
        """One pass of the control loop. Never raises for a host problem: it is recorded."""
        with self.lock:
            if not self.connected and not self._reconnect():
                return None
            try:
                obs = self.sampler.sample()
            except BackendUnavailable as exc:
                self._lost(exc)
                return None
            self.ticks += 1
            self.last_tick_at = self.monotonic()
            self.observation = obs
            applied = self.actuator.applied
            if self.state.dom0_pin and not self._hold_dom0_pin(obs):
                return None
            if self.state.overrides and not self._hold_overrides(obs):
                return None
            if self.actuator.applied != applied:
                self._refresh_settings()  # the policy and status see the settings as held
                if not self.connected:
                    return None
                obs = self.observation
            if not obs.complete:
                self.assessment = None
                return obs
            assessment = assess(
                obs,
                frame_mbps(self.host.link_mbps or self.settings.link_mbps),
                self.settings.network_active_mbps,
            )
            context = self._context(obs)
            decision = self.policy.decide(obs, assessment, context, self.policy_state)
            self.policy_state = decision.state
            if not decision.partial:
                self._note_findings(decision.findings)
            if decision.verdict is not None:
                self._note_verdict(decision.verdict)
            self.assessment = replace(assessment, findings=self.findings)
            for action in decision.actions:
                if not self._apply_policy_action(action, context, obs):
                    break
            if decision.actions:
                self._refresh_settings()  # status shows the policy's changes at once too
            return self.observation

    def _hold_dom0_pin(self, obs: Observation) -> bool:
        """A manual dom0 pinning holds for domains that appear after it: a domU on dom0's
        CPUs is moved off them, dom0 is put back on them if something moved it. False if
        the host went away."""
        cpus = frozenset(self.state.dom0_pin or ())
        for d in obs.domains:
            astray = (
                d.pinning != Pinning((cpus,) * d.vcpus)
                if d.is_dom0
                else any(c & cpus for c in d.pinning.vcpus)
            )
            if not astray:
                continue
            try:
                self._apply_dom0_pin(cpus, [d])
            except DomainGone:
                continue
            except BackendUnavailable as exc:
                self._lost(exc)
                return False
            except BackendError as exc:
                # Refused (a CPU of it went offline): it cannot hold, and retrying every
                # tick would only repeat the error. Dropped once, as at a restart.
                log.warning(
                    "manual dom0 pinning dropped: the host refused it",
                    domain=d.name,
                    dom0_pin=sorted(cpus),
                    error=str(exc),
                )
                self.state.dom0_pin = None
                self._save_quietly()
                return True
        return True

    def _hold_overrides(self, obs: Observation) -> bool:
        """A manual weight holds: a domU rebooted (same UUID, its configured weight again)
        or re-weighted behind xvrd's back gets it back, rather than status saying 'manual'
        over a weight that is not. False if the host went away."""
        overrides = self.state.overrides
        astray = [
            d for d in obs.domains if d.uuid in overrides and d.weight != overrides[d.uuid].weight
        ]
        try:
            self._apply_overrides(astray, "manual override (put back)")
        except BackendUnavailable as exc:
            self._lost(exc)
            return False
        except (BackendError, StateError) as exc:
            log.warning("manual weight not held this tick", error=str(exc))  # tried again next
        return True

    def _apply_overrides(self, domains: Iterable[Domain | DomainRates], reason: str) -> None:
        """Put each domain's manual weight on it. One the host refuses (outside its range:
        a state file from another kind of host, or edited by hand) is dropped with a
        warning, as a dom0 pinning that no longer fits is: keeping it would fail every start
        and every tick. Other errors are raised."""
        for d in domains:
            override = self.state.overrides.get(d.uuid)
            if override is None:
                continue
            try:
                self.actuator.set_weight(d.uuid, d.name, override.weight, reason)
            except DomainGone:
                continue
            except InvalidSetting as exc:
                log.warning(
                    "manual weight dropped: the host refuses it",
                    domain=d.name,
                    weight=override.weight,
                    error=str(exc),
                )
                del self.state.overrides[d.uuid]
                self._save_quietly()

    def _save_quietly(self) -> None:
        """Save from the tick, which never raises: a failure is logged and the next save
        (the next change) tries again."""
        try:
            self.store.save(self.state)
        except StateError as exc:
            log.error("state not saved", error=str(exc))

    def _context(self, obs: Observation) -> PolicyContext:
        return PolicyContext(
            dom0_pinned_by_host=self._dom0_pinned_by_host(obs),
            weight_range=self.host.weight_range,
            manual=frozenset(self.state.overrides),
            dom0_pin_manual=bool(self.state.dom0_pin),
            can_pin_dom0=self.host.supports_dom0_pinning,
            held=self.state.hold is not None,
            mode=self.settings.mode,
            original_weights={
                d.uuid: o.weight
                for d in obs.domains
                if (o := self.state.originals.get(d.uuid)) is not None and o.owns_weight(d.weight)
            },
            original_pinnings={
                d.uuid: target
                for d in obs.domains
                if d.uuid in self.state.originals
                and (target := self.actuator.pinning_to_put_back(d.uuid, d.pinning, obs.cpu_ids))
            },
        )

    def _dom0_pinned_by_host(self, obs: Observation) -> bool:
        """dom0 kept off some online CPU, by neither xvrd's policy nor a manual pin-dom0:
        its affinity is as it was before xvrd changed anything of dom0's."""
        dom0 = obs.dom0()
        if dom0 is None or self.state.dom0_pin or not dom0.pinning.is_pinned(obs.cpu_ids):
            return False
        original = self.actuator.original_pinning(dom0.uuid, dom0.pinning, obs.cpu_ids)
        return original is None or original == dom0.pinning

    def _note_findings(self, findings: tuple[Finding, ...]) -> None:
        before = {f.kind for f in self.findings}
        after = {f.kind for f in findings}
        for f in findings:
            if f.kind not in before:
                log.warning("finding appeared", kind=f.kind, summary=f.summary, **f.evidence)
        for kind in before - after:
            log.info("finding cleared", kind=kind)
        self.findings = findings

    def _note_verdict(self, verdict: Verdict) -> None:
        """A tried change judged: logged and kept for status with the figures it was
        judged on, so an operator sees why a setting stayed or went back."""
        log.info("change judged", **verdict.to_json())
        self.verdicts.append((now_iso(), verdict))

    def _apply_policy_action(
        self, action: Action, context: PolicyContext, obs: Observation
    ) -> bool:
        """Apply one policy action unless forbidden; False if the host went away."""
        setting = "weight" if isinstance(action, SetWeight) else "pinning"
        row = next((d for d in obs.domains if d.uuid == action.uuid), None)
        if isinstance(action, SetWeight):
            old, new = (str(row.weight) if row else "-"), str(action.weight)
        else:
            old, new = (pinning_text(row.pinning) if row else "-"), pinning_text(action.pinning)
        blocked = None
        if context.held:
            blocked = "held"
        elif isinstance(action, SetWeight) and action.uuid in self.state.overrides:
            blocked = "manual override"
        elif isinstance(action, SetPinning) and self.state.dom0_pin:
            blocked = "manual dom0 pinning"
        elif context.mode == "advise":
            blocked = "advise mode"
        if blocked is not None:
            self.actuator.advise(action.name, setting, old, new, f"{action.reason} ({blocked})")
            return True
        try:
            if isinstance(action, SetWeight):
                self.actuator.set_weight(action.uuid, action.name, action.weight, action.reason)
            else:
                self.actuator.set_pinning(action.uuid, action.name, action.pinning, action.reason)
        except BackendUnavailable as exc:
            self._lost(exc)
            return False
        except (BackendError, StateError) as exc:
            # This domain refused (gone, out of range, a host error, no original saved): the
            # rest of the decision still applies.
            log.warning("policy action not applied", domain=action.name, error=str(exc))
        return True

    # ------------------------------------------------------------------ reconnecting
    def _lost(self, exc: BackendError) -> None:
        if self.connected:
            log.error("host unreachable; will reconnect", error=str(exc))
        self.connected = False
        self.last_error = str(exc)
        now = self.monotonic()
        if self._reconnected_at is not None and now - self._reconnected_at < RECONNECT_MAX_S:
            # Lost again soon after coming back (reconnect works, the next call fails): the
            # host is flapping, so the backoff goes on growing instead of starting over.
            self._retry_delay = min(RECONNECT_MAX_S, self._retry_delay * 2)
        else:
            self._retry_delay = RECONNECT_FIRST_S
        self._retry_at = now + self._retry_delay

    def _reconnect(self) -> bool:
        now = self.monotonic()
        if now < self._retry_at:
            return False
        if not self._connect():
            self._retry_delay = min(RECONNECT_MAX_S, self._retry_delay * 2)
            self._retry_at = now + self._retry_delay
            return False
        self._reconnected_at = now
        self.sampler.reset()
        log.info("host reachable again", uri=self.host.uri)
        try:
            self.reconcile()
        except BackendError as exc:
            self._lost(exc)
            return False
        return True

    # ------------------------------------------------------------------ domains by name
    def _resolve(self, domain: str) -> Domain:
        found = self._find(domain, self._listed())
        if found is None:
            raise _not_running(domain)
        return found

    def _listed(self) -> list[Domain]:
        try:
            return self.backend.list_domains()
        except BackendUnavailable as exc:
            raise ControlError("unavailable", f"host unreachable: {exc}") from None

    @staticmethod
    def _find(domain: str, domains: list[Domain]) -> Domain | None:
        # A name first, then a UUID, then a domain ID (ASCII digits): a domain named "2"
        # is the one meant by "2", whichever order the host lists domains in.
        try:
            domid: int | None = parse_number(domain, DOMID_MAX)
        except ValueError:
            domid = None
        return (
            next((d for d in domains if d.name == domain), None)
            or next((d for d in domains if d.uuid == domain.lower()), None)
            or next((d for d in domains if d.domid == domid), None)
        )

    def _refresh_settings(self) -> None:
        """Re-read weights and pinning into the last observation, so status shows a change
        made by an operator at once rather than a tick later."""
        obs = self.observation
        if obs is None:
            return
        rows = []
        for d in obs.domains:
            try:
                sched = self.backend.get_sched(d.uuid)
                pinning = self.backend.get_pinning(d.uuid)
            except DomainGone:
                continue
            except BackendUnavailable as exc:
                self._lost(exc)  # the tick (or command) is done; the next one reconnects
                return
            except BackendError:
                rows.append(d)  # as last read: this domain is the sampler's to report
                continue
            rows.append(replace(d, weight=sched.weight, cap=sched.cap, pinning=pinning))
        self.observation = replace(obs, domains=tuple(rows))

    def _guard(self, fn: Callable[[], str]) -> str:
        """Run an operator command under the lock, turning host errors into ControlErrors."""
        with self.lock:
            if not self.connected:
                raise ControlError("unavailable", f"host unreachable: {self.last_error}")
            try:
                message = fn()
                self._refresh_settings()
                return message
            except DomainGone as exc:
                raise ControlError("not_found", str(exc)) from None
            except InvalidSetting as exc:
                raise ControlError("invalid", str(exc)) from None
            except Unsupported as exc:
                raise ControlError("unsupported", str(exc)) from None
            except BackendUnavailable as exc:
                self._lost(exc)
                raise ControlError("unavailable", f"host unreachable: {exc}") from None
            except StateError as exc:
                log.error("state not saved", error=str(exc))
                raise ControlError("unavailable", str(exc)) from None

    @contextlib.contextmanager
    def _saved(self) -> Iterator[PersistedState]:
        """The persisted state to change, saved on leaving, before the host is touched: if
        the save fails, the state in memory is put back as it was and StateError raised, so
        an operator's command that reports a failure has changed nothing."""
        before = self.state.model_copy(deep=True)
        yield self.state
        try:
            self.store.save(self.state)
        except StateError:
            for name in type(self.state).model_fields:
                setattr(self.state, name, getattr(before, name))
            raise

    # ------------------------------------------------------------------ ControlAPI
    def set_weight(self, domain: str, weight: int) -> str:
        wr = self.host.weight_range
        if not wr.contains(weight):
            raise ControlError("invalid", f"weight must be in [{wr.low}, {wr.high}], got {weight}")

        def run() -> str:
            d = self._resolve(domain)
            before = self.state.overrides.get(d.uuid)
            self.actuator.remember(d.uuid, d.name)
            with self._saved() as state:
                state.overrides[d.uuid] = Override(name=d.name, weight=weight)
            try:
                self.actuator.set_weight(d.uuid, d.name, weight, "manual override")
            except BackendError:
                # The host refused: the override it was saved as goes too (the host's
                # error is the one reported; a failed save of the undo is only logged).
                try:
                    with self._saved() as state:
                        state.overrides.pop(d.uuid)
                        if before is not None:
                            state.overrides[d.uuid] = before
                except StateError as exc:
                    log.error("state not saved", error=str(exc))
                raise
            log.info("override set", domain=d.name, weight=weight)
            return f"{d.name}: weight {weight} (manual; the policy will not change it)"

        return self._guard(run)

    def unset(self, domain: str) -> str:
        def run() -> str:
            domains = self._listed()
            d = self._find(domain, domains)
            stale = self._stale_override(domain, domains, d)
            if stale is not None:
                uuid, name = stale
                with self._saved() as state:
                    del state.overrides[uuid]
                log.info("override removed", domain=name, running=False)
                return f"{name}: manual weight removed (not running: nothing to put back)"
            if d is None:
                raise _not_running(domain)
            if d.uuid not in self.state.overrides:
                raise ControlError("not_found", f"{d.name} has no manual weight")
            with self._saved() as state:
                del state.overrides[d.uuid]
            # The weight only: a pinning (the policy's or a manual pin-dom0) is not the
            # override's and stays.
            self.actuator.restore_weight(d.uuid, "manual override removed")
            log.info("override removed", domain=d.name)
            return f"{d.name}: manual weight removed, original weight back"

        return self._guard(run)

    def _stale_override(
        self, domain: str, domains: list[Domain], found: Domain | None
    ) -> tuple[str, str] | None:
        """(UUID, name) of the override of a domain not running that ``domain`` names, by
        name or UUID, when no running domain (``found`` among ``domains``) has an override
        under that name: none answers to it, or the one that does was created again under a
        new UUID, as `xl create` without `uuid=` does. It can still be dropped."""
        if found is not None and found.uuid in self.state.overrides:
            return None
        running = {d.uuid for d in domains}
        return next(
            (
                (uuid, o.name)
                for uuid, o in sorted(self.state.overrides.items())
                if uuid not in running and (domain == o.name or domain.lower() == uuid)
            ),
            None,
        )

    def _dom0_pin_refusal(self, cpus: frozenset[int]) -> ControlError | None:
        """Why dom0 cannot be pinned to ``cpus`` on this host, or None: the one rule for
        an operator's request and for the pinning saved by an earlier run."""
        if not self.host.supports_dom0_pinning:
            return ControlError("unsupported", "this host does not allow pinning dom0")
        online = self.host.cpu_ids
        if not cpus or not cpus <= online:
            return ControlError(
                "invalid",
                f"cpus: must be a non-empty subset of the online CPUs {format_cpu_list(online)}"
                + (f"; not online: {format_cpu_list(cpus - online)}" if cpus - online else ""),
            )
        if cpus == online:
            return ControlError(
                "invalid",
                f"cpus: must leave at least one of the online CPUs {format_cpu_list(online)} "
                "to the domUs",
            )
        return None

    def pin_dom0(self, cpus: frozenset[int]) -> str:
        refusal = self._dom0_pin_refusal(cpus)
        if refusal is not None:
            raise refusal

        def run() -> str:
            with self._saved() as state:
                state.dom0_pin = sorted(cpus)
            self._apply_dom0_pin(cpus, self.backend.list_domains())
            log.info("dom0 pinned", cpus=sorted(cpus))
            return f"dom0 pinned to CPUs {','.join(map(str, sorted(cpus)))}; domUs kept off them"

        return self._guard(run)

    def _apply_dom0_pin(
        self, cpus: frozenset[int], domains: Sequence[Domain | DomainRates]
    ) -> None:
        rest = self.host.cpu_ids - cpus
        for d in domains:
            if d.is_dom0:
                target = Pinning((cpus,) * d.vcpus)
            else:
                # Off dom0's CPUs only: a domU pinned to some of the others stays on those.
                now = d.pinning if isinstance(d, DomainRates) else self.backend.get_pinning(d.uuid)
                target = now.within(rest, d.vcpus)
            self.actuator.set_pinning(d.uuid, d.name, target, "manual dom0 pinning")

    def unpin_dom0(self) -> str:
        def run() -> str:
            if not self.state.dom0_pin:
                raise ControlError("not_found", "dom0 is not pinned by an override")
            with self._saved() as state:
                state.dom0_pin = None
            # Only what xvrd pinned and the host still holds: a domU it never touched, or
            # one pinned by hand since, keeps its affinity.
            try:
                for d in self.backend.list_domains():
                    with contextlib.suppress(DomainGone):
                        self.actuator.put_back_pinning(d.uuid, "manual dom0 pinning removed")
            finally:
                self._save_quietly()
            log.info("dom0 unpinned")
            return "dom0 unpinned; original affinities back"

        return self._guard(run)

    def hold(self, reason: str) -> str:
        with self.lock:
            held = self.state.hold
            if held is not None and (not reason or reason == held.reason):
                # a second `xvrd hold` keeps the first's reason and time
                return f"already held since {held.since}" + (
                    f": {held.reason}" if held.reason else ""
                )
            since = held.since if held is not None else now_iso()
            self.state.hold = Hold(reason=reason, since=since)
            try:
                self.store.save(self.state)
            except StateError as exc:
                # Stopping automatic changes is the safe side: the hold stays, unsaved.
                log.error("hold not saved", reason=reason, error=str(exc))
                raise ControlError(
                    "unavailable", f"held until the daemon stops, but not saved: {exc}"
                ) from None
            log.info("hold", reason=reason)
            return "automatic changes held" + (f": {reason}" if reason else "")

    def resume(self) -> str:
        with self.lock:
            held = self.state.hold
            if held is None:
                return "not held"
            self.state.hold = None
            try:
                self.store.save(self.state)
            except StateError as exc:
                self.state.hold = held  # a resume that a restart would undo: not done
                log.error("resume not saved", error=str(exc))
                raise ControlError("unavailable", f"still held: {exc}") from None
            log.info("resumed")
            return "automatic changes resumed"

    def restore(self) -> str:
        def forget(s: PersistedState) -> None:
            # Held even when a domain fails: the policy must not re-tune what went back.
            s.overrides.clear()
            s.dom0_pin = None
            s.hold = Hold(reason="restored by operator", since=now_iso())

        def run() -> str:
            try:
                with self._saved() as state:
                    forget(state)
            except StateError as exc:
                # The originals are the safe side: put back all the same, held until the
                # daemon stops (as `hold` errs on the held side); a restart would read the
                # overrides still saved.
                forget(self.state)
                with contextlib.suppress(StateError):
                    self.actuator.restore_all("restore requested")
                log.error("restore not saved", error=str(exc))
                raise ControlError(
                    "unavailable",
                    f"restored and held until the daemon stops, but not saved: {exc}",
                ) from None
            records, failed = self.actuator.restore_all("restore requested")
            log.info("restored", changes=len(records), failed=failed)
            if failed:
                raise ControlError(
                    "unavailable",
                    f"restored {len(records)} setting(s) and held, but not {', '.join(failed)} "
                    "(see the log; `xvrd restore` again retries them)",
                )
            return f"restored {len(records)} setting(s); automatic changes held until resume"

        return self._guard(run)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        with self.lock:
            obs = self.observation
            a = self.assessment
            active = set(a.network_active) if a is not None else set()
            domains = []
            if obs is not None:
                for d in obs.domains:
                    if d.uuid in self.state.overrides:
                        source = "manual"
                    elif (o := self.state.originals.get(d.uuid)) and (
                        d.weight != o.weight and o.owns_weight(d.weight)
                    ):
                        source = "auto"  # not of a domU xvrd only pinned, nor set by hand since
                    else:
                        source = "default"
                    domains.append(
                        {
                            "name": d.name,
                            "domid": d.domid,
                            "uuid": d.uuid,
                            "weight": d.weight,
                            "weight_source": source,
                            "cap": d.cap,
                            "pinning": pinning_lists(d.pinning),
                            "rx_mbps": _round(d.rx_mbps),
                            "tx_mbps": _round(d.tx_mbps),
                            "cpu_pct": _round(d.cpu_pct),
                            "network_active": d.uuid in active,
                        }
                    )
            hold = self.state.hold
            running = {d.uuid for d in obs.domains} | set(self.sampler.unreadable) if obs else set()
            age = None if self.last_tick_at is None else self.monotonic() - self.last_tick_at
            return {
                "version": PROTOCOL_VERSION,
                "backend": {
                    "kind": self.host.kind,
                    "uri": self.host.uri,
                    "scheduler": self.host.scheduler,
                    "cpus": self.host.cpus,
                    "cpu_ids": sorted(self.host.cpu_ids),
                    "connected": self.connected,
                    "last_error": self.last_error,
                },
                "interval_s": self.settings.interval_s,
                "mode": self.settings.mode,
                "policy": self.policy.name,
                "ticks": self.ticks,
                "last_tick_age_s": _round(age),
                "hold": {
                    "held": hold is not None,
                    "reason": hold.reason if hold else None,
                    "since": hold.since if hold else None,
                },
                "dom0_pin": self.state.dom0_pin,
                "domains": domains,
                "unreadable": [
                    {"name": u.name, "domid": u.domid, "uuid": uuid, "error": u.error}
                    for uuid, u in sorted(self.sampler.unreadable.items())
                ],
                "overrides": [
                    {
                        "name": o.name,
                        "uuid": uuid,
                        "weight": o.weight,
                        "running": (uuid in running) if obs is not None else None,
                    }
                    for uuid, o in sorted(
                        self.state.overrides.items(), key=lambda item: (item[1].name, item[0])
                    )
                ],
                "dom0_cpu_pct": _round(a.dom0_cpu_pct) if a else None,
                "idle_pct": _round(a.idle_pct) if a else None,
                "aggregate_mbps": _round(a.aggregate_mbps) if a else None,
                "jain": _round(a.jain, 4) if a else None,
                "efficiency": _round(a.efficiency, 4) if a else None,
                "findings": [
                    {"kind": f.kind, "summary": f.summary, "evidence": f.evidence}
                    for f in self.findings
                ],
                "actions": [r.to_json() for r in self.actuator.history],
                "verdicts": [{"time": t, **v.to_json()} for t, v in self.verdicts],
            }

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        a = self.assessment
        if not self.connected:
            return f"host unreachable: {self.last_error}"
        if a is None:
            return f"sampling ({self.ticks} ticks)"
        held = ", held" if self.state.hold else ""
        return (
            f"{len(a.network_active)} network-active domUs, {a.aggregate_mbps:.0f} Mb/s, "
            f"Jain {a.jain:.2f}, dom0 CPU {a.dom0_cpu_pct:.0f} %{held}"
        )


def _not_running(domain: str) -> ControlError:
    return ControlError("not_found", f"no running domain named {domain!r} (name, UUID or ID)")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
