"""The only place settings on the host change: weights and pinning, originals first.

Before the first change to a domain, its settings as the host reports them are recorded and
persisted, so a clean stop, `xvrd restore`, or the next start after a crash can put them
back; so is each value xvrd sets, before it sets it, so that a setting changed by hand since
is left as the operator made it. Weights outside the scheduler's range are refused, never
clamped silently.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from xvrd.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    DomainGone,
    InvalidSetting,
    Pinning,
    WeightRange,
)
from xvrd.state import Original, PersistedState, StateError, StateStore, now_iso

log = structlog.get_logger("xvrd.actuator")

#: How many recent actions status shows.
ACTION_HISTORY = 20
#: A change not applied (advise mode, hold, an override in the way) is logged at most this
#: often per domain and setting: the policy may ask again every tick or two, and the log is
#: for what changes. Status shows every one.
ADVICE_LOG_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One change, made or refused, as status and logs show it."""

    time: str
    domain: str
    setting: str  # "weight" or "pinning"
    old: str
    new: str
    reason: str
    applied: bool
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "domain": self.domain,
            "setting": self.setting,
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "applied": self.applied,
            "error": self.error,
        }


def pinning_text(pinning: Pinning) -> str:
    return " ".join(",".join(str(c) for c in sorted(cpus)) for cpus in pinning.vcpus) or "-"


def pinning_lists(pinning: Pinning) -> list[list[int]]:
    return [sorted(cpus) for cpus in pinning.vcpus]


class Actuator:
    """Applies changes through the backend, remembering originals in the persisted state."""

    def __init__(
        self,
        backend: Backend,
        store: StateStore,
        state: PersistedState,
        weight_range: WeightRange,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.store = store
        self.state = state
        self.weight_range = weight_range
        self.monotonic = monotonic
        self.history: deque[ActionRecord] = deque(maxlen=ACTION_HISTORY)
        self.applied = 0  # changes made since start
        # Record every change as advice instead of making it: `xvrd run --once --mode
        # advise`, which promises to leave the host as it found it, overrides included.
        self.dry_run = False
        self._advice_logged: dict[tuple[str, str], tuple[float, int]] = {}  # at, repeats

    # ------------------------------------------------------------------ originals
    def original_pinning(
        self, uuid: str, current: Pinning, online: frozenset[int] | None = None
    ) -> Pinning | None:
        """The affinity recorded before xvrd changed it, for the vCPUs the domain has now
        (``current``: one added since keeps its own, as `xl vcpu-set` gave it) and as the
        host can take it now (a vCPU whose CPUs have all gone offline on every online one);
        None if none is recorded. ``online``: the online CPUs when the caller has them (else
        the host is asked)."""
        original = self.state.originals.get(uuid)
        if original is None or not original.pinning:
            return None
        recorded = tuple(frozenset(c) for c in original.pinning)
        fitted = Pinning(recorded[: len(current.vcpus)] + current.vcpus[len(recorded) :])
        return fitted.onto(self.backend.info().cpu_ids if online is None else online)

    def remember(self, uuid: str, name: str) -> Original:
        """Record (and persist) a domain's current settings unless already recorded."""
        original = self.state.originals.get(uuid)
        if original is None:
            original = self._note(uuid, name)
        return original

    def _note(
        self,
        uuid: str,
        name: str,
        *,
        weight: tuple[int, int] | None = None,
        pinning: tuple[Pinning, Pinning] | None = None,
    ) -> Original:
        """Persist the value xvrd is about to set, ``(now, new)`` for a weight or a
        pinning, the domain's originals first. Both are noted before the change, and kept
        until the host has taken it (`_settled`): a change that failed, or that a crash cut
        short, leaves the host at one of them, and a stop still puts it back.

        A value the host has now that is neither the original nor one xvrd set is the
        operator's, set by hand since: it becomes the original, what a stop puts back."""
        original = self.state.originals.get(uuid)
        before = original
        if original is None:
            sched = self.backend.get_sched(uuid)
            current = pinning_lists(self.backend.get_pinning(uuid))
            original = Original(name=name, weight=sched.weight, cap=sched.cap, pinning=current)
        if weight is not None:
            now, new = weight
            if now != original.weight and not original.owns_weight(now):
                original = original.model_copy(update={"weight": now})
            # Only the value in flight and the one before it can be on the host after this
            # (an older one xvrd set is the operator's if the host has it again).
            original = original.model_copy(update={"weights_set": list(dict.fromkeys([now, new]))})
        if pinning is not None:
            original = _noted_pinning(original, *pinning)
        self.state.originals[uuid] = original
        try:
            self.store.save(self.state)
        except StateError:
            # No change without its original on disk: a crash would lose what to put back.
            if before is None:
                del self.state.originals[uuid]
            else:
                self.state.originals[uuid] = before
            raise
        return original

    # ------------------------------------------------------------------ changes
    def set_weight(self, uuid: str, name: str, weight: int, reason: str) -> ActionRecord:
        """Set a weight (originals recorded first). Raises InvalidSetting out of range."""
        wr = self.weight_range
        if not wr.contains(weight):
            raise InvalidSetting(f"weight must be in [{wr.low}, {wr.high}], got {weight}")
        old = self.backend.get_sched(uuid).weight
        change = (str(old), str(weight))
        if old == weight:
            original = self.state.originals.get(uuid)
            if original is not None and old != original.weight and not original.owns_weight(old):
                # asked for what the operator set by hand: xvrd's from now, over that original
                self._note(uuid, name, weight=(old, weight))
            return self._record(name, "weight", change, reason, applied=False)
        if self.dry_run:
            return self.advise(name, "weight", *change, f"{reason} (dry run)")
        self._note(uuid, name, weight=(old, weight))
        try:
            self.backend.set_weight(uuid, weight)
        except BackendError as exc:
            self._record(name, "weight", change, reason, applied=False, error=str(exc))
            raise
        self._settled(uuid, weights_set=[weight])
        return self._record(name, "weight", change, reason, applied=True)

    def set_pinning(self, uuid: str, name: str, pinning: Pinning, reason: str) -> ActionRecord:
        old = self.backend.get_pinning(uuid)
        change = (pinning_text(old), pinning_text(pinning))
        if old == pinning:
            return self._record(name, "pinning", change, reason, applied=False)
        if self.dry_run:
            return self.advise(name, "pinning", *change, f"{reason} (dry run)")
        self._note(uuid, name, pinning=(old, pinning))
        try:
            self.backend.set_pinning(uuid, pinning)
        except BackendError as exc:
            self._record(name, "pinning", change, reason, applied=False, error=str(exc))
            raise
        record = self._record(name, "pinning", change, reason, applied=True)
        try:
            # What the host made of it (QEMU's cpuset narrows a thread's affinity) is what a
            # restore must recognise as xvrd's.
            held = self.backend.get_pinning(uuid)
        except BackendError as exc:
            log.warning("pinning set, but not read back", domain=name, error=str(exc))
        else:
            self._settled(uuid, pinnings_set=[pinning_lists(held)])
        return record

    def _settled(self, uuid: str, **noted: object) -> None:
        """The host took the change: only the new value is xvrd's now (one xvrd set before,
        if the operator sets it again by hand, is the operator's)."""
        self.state.originals[uuid] = self.state.originals[uuid].model_copy(update=noted)
        try:
            self.store.save(self.state)
        except StateError as exc:
            log.error("state not saved", error=str(exc))  # both values stay xvrd's meanwhile

    def advise(self, name: str, setting: str, old: str, new: str, reason: str) -> ActionRecord:
        """Record what would have been done (advise mode, hold, or an override in the way):
        status shows it among the actions, marked not applied, and the log has it (at most
        every ADVICE_LOG_EVERY_S per domain and setting, with how many were not logged)."""
        record = self._record(name, setting, (old, new), reason, applied=False)
        # The same advice again (advise mode repeats it every tick) replaces the earlier
        # entry, so it does not push real changes out of the history status shows.
        for earlier in [r for r in self.history if _same_advice(r, record)]:
            self.history.remove(earlier)
        self.history.append(record)
        now = self.monotonic()
        at, repeats = self._advice_logged.get((name, setting), (-ADVICE_LOG_EVERY_S, 0))
        if now - at >= ADVICE_LOG_EVERY_S:
            log.info(
                "change not applied",
                domain=name,
                setting=setting,
                old=old,
                new=new,
                reason=reason,
                repeats_not_logged=repeats,
            )
            self._advice_logged[(name, setting)] = (now, 0)
        else:
            self._advice_logged[(name, setting)] = (at, repeats + 1)
        return record

    def _record(
        self,
        name: str,
        setting: str,
        change: tuple[str, str],
        reason: str,
        *,
        applied: bool,
        error: str | None = None,
    ) -> ActionRecord:
        old, new = change
        record = ActionRecord(now_iso(), name, setting, old, new, reason, applied, error)
        self.applied += applied
        if applied or error:
            self.history.append(record)
            event = "setting changed" if applied else "setting change failed"
            log.info(
                event, domain=name, setting=setting, old=old, new=new, reason=reason, error=error
            )
        return record

    # ------------------------------------------------------------------ restore
    def restore(self, uuid: str, reason: str) -> list[ActionRecord]:
        """Put one domain's originals back and forget them. A vanished domain is forgotten;
        a host error is raised with the original kept for a later restore."""
        records = self._put_back(uuid, reason)
        self.store.save(self.state)
        return records

    def restore_weight(self, uuid: str, reason: str) -> list[ActionRecord]:
        """Put one domain's original weight back (its manual weight removed). An affinity
        xvrd set stays xvrd's, recorded for a later restore: the pinning is not the
        override's."""
        records = self._put_back(uuid, reason, weight_only=True)
        self.store.save(self.state)
        return records

    def _put_back(self, uuid: str, reason: str, *, weight_only: bool = False) -> list[ActionRecord]:
        """The originals back (``weight_only``: the weight, the record kept for an affinity
        xvrd set), and forgotten. A vanished domain is forgotten."""
        original = self.state.originals.get(uuid)
        if original is None:
            return []
        records: list[ActionRecord | None] = []
        kept: Original | None = None
        try:
            records.append(self._put_back_weight(uuid, original, reason))
            if weight_only:
                kept = self._for_pinning_alone(uuid, original)
            else:
                # The cap is recorded, not restored: xvrd never sets one, so a cap that
                # differs now is an operator's (`xl sched-credit -c`), made while xvrd ran.
                records.append(self.put_back_pinning(uuid, reason))
        except DomainGone:
            log.info("domain gone, nothing to restore", domain=original.name, uuid=uuid)
        if kept is None:
            del self.state.originals[uuid]
        else:
            self.state.originals[uuid] = kept
        return [r for r in records if r is not None]

    def _for_pinning_alone(self, uuid: str, original: Original) -> Original | None:
        """``original`` once its weight is back, for the affinity xvrd set, or None if it
        set none. A legacy record is settled first, as reconcile settles one: kept legacy,
        it would take any weight set by hand later for xvrd's."""
        if original.legacy:
            current = pinning_lists(self.backend.get_pinning(uuid))
            original = original.settled(original.weight, current)
        return original.model_copy(update={"weights_set": []}) if original.pinnings_set else None

    def _put_back_weight(self, uuid: str, original: Original, reason: str) -> ActionRecord | None:
        """The original weight back if the host still holds one xvrd set: the change made."""
        if not (original.weights_set or original.legacy):
            return None
        weight = self.backend.get_sched(uuid).weight
        if weight == original.weight:
            return None
        if not original.owns_weight(weight):
            _left_by_hand(original, "weight", str(weight))
            return None
        self.backend.set_weight(uuid, original.weight)
        change = (str(weight), str(original.weight))
        return self._record(original.name, "weight", change, reason, applied=True)

    def put_back_pinning(self, uuid: str, reason: str) -> ActionRecord | None:
        """Put a domain's original affinity back if the host still holds xvrd's, vCPU by
        vCPU (one a restore cut short already put back counts as xvrd's): the change made,
        or None. Saved by the caller."""
        original = self.state.originals.get(uuid)
        if original is None or not (original.pinnings_set or original.legacy):
            return None
        current = self.backend.get_pinning(uuid)
        target, by_hand = self._put_back_target(original, uuid, current)
        if by_hand:
            _left_by_hand(original, "pinning", pinning_text(current))
        if target is None:
            return None
        self.backend.set_pinning(uuid, target)
        self.state.originals[uuid] = original.model_copy(update={"pinnings_set": []})
        change = (pinning_text(current), pinning_text(target))
        return self._record(original.name, "pinning", change, reason, applied=True)

    def pinning_to_put_back(
        self, uuid: str, current: Pinning, online: frozenset[int]
    ) -> Pinning | None:
        """The affinity `put_back_pinning` would set now (``current`` and ``online`` as
        last observed), or None when it would change nothing: what xvrd's pinning of the
        domain undone looks like, for the policy to give its pin back."""
        original = self.state.originals.get(uuid)
        if original is None or not (original.pinnings_set or original.legacy):
            return None
        return self._put_back_target(original, uuid, current, online)[0]

    def _put_back_target(
        self,
        original: Original,
        uuid: str,
        current: Pinning,
        online: frozenset[int] | None = None,
    ) -> tuple[Pinning | None, bool]:
        """Each vCPU's original affinity where the host holds the one xvrd set, its own
        elsewhere (one pinned by hand since keeps the operator's): the affinity, or None if
        that is ``current``; and whether some vCPU was pinned by hand."""
        target = self.original_pinning(uuid, current, online)
        if target is None:
            return None, False
        by_hand = [
            cpus != want and not original.owns_vcpu(i, sorted(cpus))
            for i, (cpus, want) in enumerate(zip(current.vcpus, target.vcpus, strict=True))
        ]
        target = Pinning(
            tuple(
                cpus if hand else want
                for cpus, want, hand in zip(current.vcpus, target.vcpus, by_hand, strict=True)
            )
        )
        return (None if target == current else target), any(by_hand)

    def restore_all(self, reason: str) -> tuple[list[ActionRecord], list[str]]:
        """Put every recorded original back; returns what changed and the domains that could
        not be restored. One domain's error (being torn down, a CPU gone) does not keep the
        others from going back: it keeps its original for a later restore. An unreachable
        host stops it (raised), with what was done saved."""
        records: list[ActionRecord] = []
        failed: list[str] = []
        try:
            for uuid in list(self.state.originals):
                try:
                    records.extend(self._put_back(uuid, reason))
                except BackendUnavailable:
                    raise
                except BackendError as exc:
                    name = self.state.originals[uuid].name
                    failed.append(name)
                    log.error("could not restore domain", domain=name, uuid=uuid, error=str(exc))
        finally:
            self.store.save(self.state)
        return records, failed


def _left_by_hand(original: Original, setting: str, now: str) -> None:
    log.info(
        "changed by hand since xvrd set it: left as it is",
        domain=original.name,
        setting=setting,
        now=now,
    )


def _noted_pinning(original: Original, now: Pinning, new: Pinning) -> Original:
    """``original`` with ``new`` noted as an affinity xvrd set over ``now``, vCPU by vCPU.
    A vCPU of ``now`` that is neither its original nor xvrd's was pinned by hand since:
    the operator's affinity becomes that vCPU's original. A vCPU added since (`xl
    vcpu-set`) gets its affinity now as its original."""
    current = pinning_lists(now)
    recorded = original.pinning
    merged = [
        cpus if i >= len(recorded) or not original.owns_vcpu(i, cpus) else recorded[i]
        for i, cpus in enumerate(current)
    ] + recorded[len(current) :]
    return original.model_copy(
        update={"pinning": merged, "pinnings_set": [current, pinning_lists(new)]}
    )


def _same_advice(a: ActionRecord, b: ActionRecord) -> bool:
    return (
        not a.applied
        and not a.error
        and (a.domain, a.setting, a.old, a.new)
        == (
            b.domain,
            b.setting,
            b.old,
            b.new,
        )
    )
