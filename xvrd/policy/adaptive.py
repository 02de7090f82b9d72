"""The adaptive policy: find dom0's weight (and pinning), and a crowded-out domU's weight,
by trying, keep what helps.

Each tick the policy sees the findings (`xvrd.policy.detect`) and an objective, the
aggregate throughput times Jain's index among network-active domUs: throughput that is
shared fairly. It changes one thing at a time and judges it:

1. *Feed-forward.* When findings persist (two ticks), or appear as the set of
   network-active domUs changes, or unfairness does in the tick after (the first in which
   a new flow's rate can be seen to move: `xvrd.policy.detect.showing_starvation`), dom0's
   weight starts from what the credit arithmetic says it needs: dom0 earns
   ``w0 / (w0 + W)`` of the host, so to cover a demand ``d`` it needs ``w0 = W d / (1 - d)``,
   W being the other CPU-active domains' weights and d dom0's use with a margin. When
   domUs join a dom0 that already uses what its weight earns, the first tick that sees
   their rates goes to the estimate without waiting for a finding; the tick in which
   domains were destroyed is skipped (their share of its traffic is missing).
2. *Feedback.* After a change the policy lets the host settle one tick, measures the
   objective over two more, and keeps the change only if the objective rose by at least
   ``GAIN`` (lowering: did not fall by more than ``LOSS``); otherwise it puts the old value
   back and waits ``COOLDOWN`` ticks (doubling after each failure) before trying again;
   ``GIVE_BACK_COOLDOWN`` after a give-back that hurt.
   While findings persist after a kept change, the next step doubles the weight.
3. *Pinning.* When dom0's weight is already high, or a raise did not help, and findings
   persist with CPU to spare, dom0 is pinned to the first online pCPU and the domUs kept
   off it, on a host that can pin dom0 and if what dom0 uses fits on that pCPU (after a
   raise that did not help: at once, measured as the residual pin below; where it cannot
   pin, the raise is tried again after its cooldown). Also when a kept raise cured the
   starvation but sharing stays short of fair (mean Jain under ``JAIN_FAIR`` over
   ``RESIDUAL_WINDOW`` ticks, a domU under the mean showing starvation) or the link short
   of full (mean efficiency under
   ``EFFICIENCY_FULL``) with dom0 still busy and the domUs' CPU fitting on the other
   pCPUs: the domUs' wake-ups on dom0's pCPU still delay it, and alone there nothing does.
   That small gain is measured over more ticks.
4. *Giving CPU back.* When the findings have been gone for ``GIVE_BACK_AFTER`` ticks, dom0's
   weight is above the one xvrd found (or xvrd pinned dom0) and a domU would use the CPU
   (little idle, and a domU using CPU without moving traffic, or a network domU using all
   its vCPUs allow; `wanting_cpu`), the policy unpins (putting back only the affinities
   xvrd set) or halves the weight (only if half still earns what dom0 uses, never below
   the weight found), again keeping it only if nothing suffers. A dom0 pinning the host
   made (at boot, by hand) is left as it is.
5. *Crowded-out domUs.* A network domU among CPU-bound domUs is runnable most of the time,
   seldom wakes with BOOST and queues behind them: dom0's weight cannot help it. On that
   finding the policy doubles the domU's own weight (and dom0's to its estimate in the
   same step if dom0 is short of credit too), judged the same way, and gives it back once
   the domU moves no traffic or nothing CPU-bound competes with it any more.

A change is judged over the domUs that moved traffic when it began, those it silenced at
zero (one it revived from under the activity threshold is not counted against it); a domU
whose own traffic ends during a trial counts against it too, which errs towards
putting a change back. A change being judged when domains come or go, or when domUs that
had moved nothing start moving traffic, stays unjudged (its baseline was other traffic),
and a hold forgets what was measured before it. A domU libvirt could not read for a tick
is still running, not destroyed and created again: if it moved traffic in the last
``REGIME_MEMORY`` ticks, a tick without its figures is no evidence and the policy waits
(then a change judged over it stays unjudged, and one begun without it ends unjudged if it
returns with traffic).

It never proposes a weight outside the scheduler's range, never touches a domain with a
manual weight or a manual dom0 pinning, and does nothing but report while held or in advise
mode. Decisions depend on what is observed, not on the order domains are listed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from xvrd.analysis import Assessment, Finding, jain_index
from xvrd.backends.base import Pinning
from xvrd.policy.base import (
    Action,
    Decision,
    PolicyContext,
    SetPinning,
    SetWeight,
    Verdict,
)
from xvrd.policy.detect import (
    CPU_ACTIVE_PCT,
    DOM0_CREDIT_BOUND,
    EFFICIENCY_LOW,
    Dom0Load,
    RateHistory,
    active_weight,
    cpu_bound_without_traffic,
    crowded_out,
    detect,
    dom0_load,
    due_pct,
    remember_rates,
    showing_starvation,
    starving_under_mean,
    wanting_cpu,
)
from xvrd.sampler import DomainRates, Observation

#: A change is kept when it raises the objective by at least this fraction.
GAIN = 0.03
#: A give-back is kept when it lowers the objective by no more than this fraction.
LOSS = 0.03
#: Ticks with findings before acting (hysteresis).
PERSIST = 2
#: Ticks to let the host settle after a change, then ticks measured.
SETTLE = 1
MEASURE = 2
#: Ticks to wait after a change that did not help; doubles after each failure.
COOLDOWN = 50
#: The same after a give-back that hurt. Nothing is wrong meanwhile, and a failed give-back
#: is two changes (the trial and its undo), so it waits twice as long: steady state then
#: stays within one change per ``COOLDOWN`` ticks.
GIVE_BACK_COOLDOWN = 2 * COOLDOWN
#: Ticks without findings before giving CPU back.
GIVE_BACK_AFTER = 15
#: dom0's weight from which pinning is tried when findings persist.
PIN_FROM_WEIGHT = 8192
#: Margin on dom0's observed CPU when estimating its demand.
DEMAND_MARGIN = 1.5
#: A give-back leaves dom0 using at most this much of what its lowered weight earns: under
#: the share from which it counts as short of credit (``DOM0_CREDIT_BOUND``), for hysteresis.
GIVE_BACK_BOUND = 0.75
#: Below this idle share of the host the domUs are taken to need the CPU.
IDLE_NEEDED_PCT = 5.0
#: A domU counts in the traffic regime for this many ticks after it was last active, so a
#: starved domU flickering around the activity threshold does not look like new traffic.
REGIME_MEMORY = 60
#: Ticks over which sharing is judged for what a raise left unfair, and the mean Jain below
#: which it is not yet fair (the issue's target at N = 8 is 0.99).
RESIDUAL_WINDOW = 5
JAIN_FAIR = 0.99
#: ... and the mean efficiency below which the link is not yet full.
EFFICIENCY_FULL = 0.98
#: A pin trial for that residual is measured longer (the gain is small next to one tick's
#: noise) and kept on a smaller gain.
RESIDUAL_MEASURE = 5
RESIDUAL_GAIN = 0.01
#: Pinning dom0 alone on a pCPU leaves the domUs the others: only when what they use fits
#: in those with this headroom.
PIN_HEADROOM = 0.9
#: ... and only when dom0 itself fits on the one pCPU (a little over, for sampling noise).
DOM0_FITS = 1.05
#: The objective falling this far below what the last kept change achieved, for
#: ``PERSIST + 1`` ticks, is a regression to act on even without a finding.
REGRESSION = 0.15


#: One tick as the policy judges it: (aggregate Mb/s, Jain); the objective is their product.
Tick = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Trial:
    """A change being judged: what to put back if it does not help."""

    purpose: str  # "raise", "lower", "pin", "unpin"
    revert: tuple[Action, ...]
    baseline: float
    samples: tuple[Tick, ...] = ()  # measured
    settle: int = SETTLE
    measure: int = MEASURE
    gain: float = GAIN
    # domUs that moved traffic when it began: judged with those it silences counted at zero
    judged_over: frozenset[str] = frozenset()
    # domUs that had moved no traffic for REGIME_MEMORY ticks when it began: their flows
    # starting during the trial make its baseline other traffic
    quiet: frozenset[str] = frozenset()
    change: str = ""  # what was changed, for the verdict
    # aggregate and Jain it is compared with: the tick it began, or its baseline's window
    before: tuple[float, float] | None = None
    boost: tuple[tuple[str, int, int], ...] = ()  # (uuid, weight before, set) if kept
    unboost: frozenset[str] = frozenset()  # boosts given back if kept


@dataclass(frozen=True, slots=True)
class AdaptiveState:
    regime: tuple[int, int, int] = (0, 0, 0)
    seen: tuple[tuple[str, int, int], ...] = ()  # (uuid, ticks left, kind) of recent traffic
    running: tuple[str, ...] = ()  # domUs that exist
    accepted: float | None = None  # objective the last kept change achieved
    kept: str = ""  # the last change kept under the current traffic: a purpose or "boost"
    regressed: int = 0  # consecutive ticks well below it
    streak: int = 0  # consecutive ticks with findings
    clear: int = 0  # consecutive ticks without
    cooldown: int = 0
    failures: int = 0
    failed: str = ""  # purpose of the last change put back since one was kept
    give_back_cooldown: int = 0
    recent: tuple[Tick, ...] = ()  # the last ticks
    fairness: tuple[Tick, ...] = ()  # the ticks since the last change, at most RESIDUAL_WINDOW
    trial: Trial | None = None
    # domUs whose weight the policy raised: (uuid, weight before, weight set)
    boosted: tuple[tuple[str, int, int], ...] = ()
    uncrowded: int = 0  # consecutive ticks without a CPU-bound domU moving no traffic
    left: bool = False  # domains were destroyed in the last interval
    fresh: bool = False  # the traffic changed at the last tick
    unfair: bool = False  # the last tick found unfairness (it clears a little higher)
    rates: RateHistory = ()  # the domUs' rates over the last ticks: who shows starvation
    starving: bool = False  # some domU under the mean showed starvation this tick


def objective(assessment: Assessment) -> float:
    """Throughput shared fairly: aggregate times Jain among network-active domUs."""
    return assessment.aggregate_mbps * assessment.jain


def jain_over(obs: Observation, uuids: set[str] | frozenset[str]) -> float:
    """Jain's index over the given domUs as they are now, silent ones at zero: a change that
    starves a domU below the activity threshold must not look fairer for it."""
    return jain_index([d.throughput_mbps for d in obs.domus() if d.uuid in uuids])


def means(ticks: tuple[Tick, ...]) -> tuple[float, float, float]:
    """Mean aggregate, Jain and objective (aggregate x Jain) of ticks; zeros for none."""
    if not ticks:
        return (0.0, 0.0, 0.0)
    n = len(ticks)
    return (
        sum(a for a, _ in ticks) / n,
        sum(j for _, j in ticks) / n,
        sum(a * j for a, j in ticks) / n,
    )


def describe(actions: tuple[Action, ...], obs: Observation) -> str:
    """A change in a few words: weights as old -> new, dom0's pinning; the domUs' pinning
    that comes with dom0's is implied."""
    by_uuid = {d.uuid: d for d in obs.domains}
    parts = []
    for a in actions:
        d = by_uuid.get(a.uuid)
        if isinstance(a, SetWeight):
            parts.append(f"{a.name} weight {d.weight if d else '?'} -> {a.weight}")
        elif d is not None and d.is_dom0:
            cpus = ",".join(str(c) for c in sorted(frozenset().union(*a.pinning.vcpus)))
            pinned = a.pinning.is_pinned(obs.cpu_ids)
            parts.append(f"{a.name} pinned to pCPU {cpus}" if pinned else f"{a.name} unpinned")
    return "; ".join(parts)


def _boosts_kept(
    boosted: tuple[tuple[str, int, int], ...], trial: Trial
) -> tuple[tuple[str, int, int], ...]:
    """The raised domUs once ``trial``'s raises and give-backs stay on the host; a domU
    raised twice keeps the weight it had before the first."""
    before = {u: w for u, w, _ in boosted}
    kept = {u: (w, n) for u, w, n in boosted if u not in trial.unboost}
    for uuid, old, new in trial.boost:
        kept[uuid] = (before.get(uuid, old), new)
    return tuple(sorted((u, w, n) for u, (w, n) in kept.items()))


def _kind(d: DomainRates, previous: int | None = None) -> int:
    """0: mostly receives, 1: mostly sends, 2: both (forwards). One direction is "mostly"
    from twice the other; a domU already classed keeps its kind until the ratio is well
    past that (1.5 to stay one-way, 3 to leave "both"), so a ratio wobbling at 2 is not new
    traffic every other tick."""
    r, t = d.rx_mbps or 0.0, d.tx_mbps or 0.0
    if previous == 0 and r > 1.5 * t:
        return 0
    if previous == 1 and t > 1.5 * r:
        return 1
    if previous == 2 and r <= 3 * t and t <= 3 * r:
        return 2
    if r > 2 * t:
        return 0
    if t > 2 * r:
        return 1
    return 2


def remember_traffic(
    obs: Observation, assessment: Assessment, seen: tuple[tuple[str, int, int], ...]
) -> tuple[tuple[str, int, int], ...]:
    """Network-active domUs of the last ``REGIME_MEMORY`` ticks, with what they do."""
    running = obs.running_domus()
    memory = {uuid: (ttl - 1, kind) for uuid, ttl, kind in seen if ttl > 1 and uuid in running}
    by_uuid = {d.uuid: d for d in obs.domus()}
    for uuid in assessment.network_active:
        if uuid in by_uuid:
            previous = memory.get(uuid, (0, None))[1]
            memory[uuid] = (REGIME_MEMORY, _kind(by_uuid[uuid], previous))
    return tuple(sorted((u, ttl, kind) for u, (ttl, kind) in memory.items()))


def regime(seen: tuple[tuple[str, int, int], ...]) -> tuple[int, int, int]:
    """How many domUs recently received, sent, or forwarded."""
    counts = [0, 0, 0]
    for _, _, kind in seen:
        counts[kind] += 1
    return (counts[0], counts[1], counts[2])


def _raises_left_behind(
    obs: Observation, context: PolicyContext
) -> tuple[tuple[str, int, int], ...]:
    """domUs whose weight is above the one recorded before xvrd changed it, found when the
    policy starts: an earlier run raised them and stopped without a clean restore (a
    crash), taking its record of the raises with it. They are treated as the policy's own
    raises, so they are given back when nothing competes with them any more."""
    return tuple(
        (d.uuid, context.original_weights[d.uuid], d.weight)
        for d in sorted(obs.domus(), key=lambda d: d.uuid)
        if d.uuid in context.original_weights
        and d.uuid not in context.manual
        and d.weight > context.original_weights[d.uuid]
    )


class AdaptivePolicy:
    """Closed-loop tuning of dom0's weight and pinning and crowded-out domUs' weights; see
    the module docstring."""

    name = "adaptive"

    def decide(
        self,
        observation: Observation,
        assessment: Assessment,
        context: PolicyContext,
        state: Any,
    ) -> Decision:
        st: AdaptiveState = (
            state
            if isinstance(state, AdaptiveState)
            else AdaptiveState(boosted=_raises_left_behind(observation, context))
        )
        # Whether the last tick changed the traffic holds for this tick only.
        fresh, st = st.fresh, replace(st, fresh=False)
        weights = {d.uuid: d.weight for d in observation.domus()}
        # A boost is forgotten once its domU is gone, has a manual weight, or someone else
        # set its weight (a trial in flight changes it on purpose).
        st = replace(
            st,
            boosted=tuple(
                (uuid, before, now)
                for uuid, before, now in st.boosted
                if uuid in observation.unreadable  # still there, its weight unread
                or (
                    uuid in weights
                    and uuid not in context.manual
                    and (st.trial is not None or weights[uuid] == now)
                )
            ),
        )
        rates = remember_rates(observation, assessment, st.rates)
        starving = showing_starvation(rates)
        findings = detect(
            observation,
            assessment,
            {u: before for u, before, _ in st.boosted},
            was_unfair=st.unfair,
            starving=starving,
        )
        dom0 = observation.dom0()
        if dom0 is None:
            return Decision(findings=findings, state=st)
        score = objective(assessment)
        tick: Tick = (assessment.aggregate_mbps, assessment.jain)
        seen = remember_traffic(observation, assessment, st.seen)
        now_regime = regime(seen)
        st = replace(
            st,
            rates=rates,
            starving=starving_under_mean(observation, assessment, starving),
            seen=seen,
            uncrowded=0 if cpu_bound_without_traffic(observation, assessment) else st.uncrowded + 1,
            unfair=any(f.kind == "unfairness" for f in findings),
        )
        if context.held:
            # Nothing changes on the host: keep judging nothing, just keep watching. A change
            # in flight stays, unjudged, as when domains come or go. What was measured
            # before the hold may not describe the host after it.
            boosted = _boosts_kept(st.boosted, st.trial) if st.trial else st.boosted
            return Decision(
                findings=findings,
                state=replace(
                    st,
                    trial=None,
                    boosted=boosted,
                    recent=(),
                    fairness=(),
                    accepted=None,
                    kept="",
                    streak=0,
                    clear=0,
                    regressed=0,
                ),
            )
        # A domU that could not be read this tick is still there, not destroyed and then
        # created again: only its figures are missing from this tick.
        running = tuple(sorted(observation.running_domus()))
        if observation.unreadable & {uuid for uuid, _, _ in st.seen}:
            # This tick lacks the share of an unread domU that moved traffic lately: no
            # evidence to judge a change on, to start one from, or to count as a
            # regression. A change in flight waits; only dom0's pinning is kept up.
            return Decision(
                actions=self._keep_domus_off_dom0(observation, context),
                findings=findings,
                state=st,
                partial=True,
            )
        # Unread and quiet for REGIME_MEMORY ticks: the ticks go on without it. A change it
        # was judged over stays unjudged; one begun meanwhile ends unjudged if it returns
        # with traffic.
        unread = observation.unreadable & (st.trial.judged_over if st.trial else frozenset())
        if st.trial is not None:
            started = st.trial.quiet & set(assessment.network_active)
            if running == st.running and not started and not unread:
                # Over the domUs the baseline was measured on: one that was below the activity
                # threshold then (a starved domU the change revived) would only lower the
                # figure, as if reviving it were a loss.
                jain = jain_over(observation, st.trial.judged_over)
                return self._judge(
                    st, (assessment.aggregate_mbps, jain), now_regime, findings, context
                )
            # Domains came or went, domUs that had been quiet started moving traffic, or one
            # stayed unread, while a change was being judged: its baseline was measured on
            # other traffic, so it can be neither kept on evidence nor blamed. It stays,
            # unjudged, and the new traffic is handled as such below.
            st = replace(st, trial=None, boosted=_boosts_kept(st.boosted, st.trial))
        if set(st.running) - set(running):
            # Domains destroyed during the interval took their share of its traffic with
            # them: this tick's aggregate and Jain are partial, no evidence for anything.
            # The next tick sees the new set of domains whole.
            survivors = tuple(sorted(set(st.running) & set(running)))
            return Decision(
                findings=findings, state=replace(st, running=survivors, left=True), partial=True
            )

        load = dom0_load(observation)
        # Less fair throughput with dom0 at ease is less traffic (flows ending, senders
        # slowing), not the host sliding back: only a busy dom0 makes it a regression. Nor
        # is a lower Jain with no domU showing starvation (one that wants less, now).
        regressed = (
            st.regressed + 1
            if (
                st.accepted is not None
                and score < st.accepted * (1 - REGRESSION)
                and load is not None
                and load.busy
                and (st.starving or assessment.efficiency < EFFICIENCY_LOW)
            )
            else 0
        )
        if regressed > PERSIST:
            findings = (
                *findings,
                Finding(
                    "regression",
                    f"fair throughput {score:.0f} fell below the {st.accepted:.0f} the last "
                    "kept change achieved",
                    {"objective": round(score, 1), "accepted": round(st.accepted or 0.0, 1)},
                ),
            )
        st = replace(
            st,
            regressed=regressed,
            streak=st.streak + 1 if findings else 0,
            clear=0 if findings else st.clear + 1,
            cooldown=max(0, st.cooldown - 1),
            give_back_cooldown=max(0, st.give_back_cooldown - 1),
            recent=(*st.recent, tick)[-MEASURE:],
            fairness=(*st.fairness, tick)[-RESIDUAL_WINDOW:],
        )
        kinds = {i for i, n in enumerate(now_regime) if n}
        # New traffic means domains created or destroyed, or another kind of traffic: not a
        # starved domU that existed all along creeping over the activity threshold.
        regime_changed = (
            st.left or running != st.running or kinds != {i for i, n in enumerate(st.regime) if n}
        )
        # Domains created since the last tick with traffic (not at the first tick: that is
        # the start); one created idle adds no packet work for dom0.
        joined = (
            len((set(running) - set(st.running)) & set(assessment.network_active))
            if st.running
            else 0
        )
        st = replace(st, running=running, left=False, fresh=regime_changed)
        if not regime_changed:
            st = replace(st, regime=now_regime)
            if fresh and st.unfair and st.trial is None:
                # The first whole interval of the new traffic, and the first in which a
                # domU's rate can be seen to move: unfairness acts at once, as it would have
                # in the tick the traffic changed had nothing been done then, and are
                # measured against this tick alone (the last may have been other traffic).
                st = replace(st, streak=max(st.streak, PERSIST), recent=(tick,))
        else:
            # New traffic: what failed before may work now, and the estimate changed.
            st = replace(
                st,
                regime=now_regime,
                cooldown=0,
                failures=0,
                failed="",
                give_back_cooldown=0,
                accepted=None,
                kept="",
                regressed=0,
                # the baseline is the new traffic's, not the old one's
                recent=(tick,),
                fairness=(),
            )
            if findings:
                st = replace(st, streak=max(st.streak, PERSIST))
        upkeep = self._keep_domus_off_dom0(observation, context)
        trial = self._next_trial(
            observation, assessment, context, st, findings, regime_changed, joined
        )
        if trial is None:
            return Decision(actions=upkeep, findings=findings, state=st)
        actions, new_trial = trial
        if context.mode == "advise":
            return Decision(actions=actions, findings=findings, state=replace(st, cooldown=PERSIST))
        return Decision(
            actions=upkeep + actions,
            findings=findings,
            state=replace(
                st,
                trial=replace(
                    new_trial,
                    judged_over=frozenset(assessment.network_active),
                    quiet=(frozenset(running) - {uuid for uuid, _, _ in st.seen})
                    | observation.unreadable,
                    change=describe(actions, observation),
                    # the ticks its baseline was measured on
                    before=new_trial.before or means(st.recent or (tick,))[:2],
                ),
                streak=0,
                clear=0,
                fairness=(),
            ),
        )

    # ------------------------------------------------------------------ judging a change
    def _judge(
        self,
        st: AdaptiveState,
        sample: Tick,
        now_regime: tuple[int, int, int],
        findings: tuple[Finding, ...],
        context: PolicyContext,
    ) -> Decision:
        """Settle, measure, then keep the change or put it back."""
        trial = st.trial
        assert trial is not None
        if trial.settle > 0:
            return Decision(
                findings=findings, state=replace(st, trial=replace(trial, settle=trial.settle - 1))
            )
        samples = (*trial.samples, sample)
        if len(samples) < trial.measure:
            return Decision(
                findings=findings, state=replace(st, trial=replace(trial, samples=samples))
            )
        aggregate_after, jain_after, mean = means(samples)
        if trial.purpose in ("lower", "unpin"):
            kept = mean >= trial.baseline * (1 - LOSS)
            rule = f"no worse than -{LOSS:.0%}"
        else:
            # With no fair throughput before or after (no traffic), nothing shows it helped.
            kept = mean > 0 and mean >= trial.baseline * (1 + trial.gain)
            rule = f"+{trial.gain:.0%}"
        verdict = Verdict(
            change=trial.change,
            kept=kept,
            objective_before=trial.baseline,
            objective_after=mean,
            rule=rule,
            aggregate_before=trial.before[0] if trial.before else 0.0,
            jain_before=trial.before[1] if trial.before else 0.0,
            aggregate_after=aggregate_after,
            jain_after=jain_after,
            # An operator's setting made meanwhile stays: its undo will not be applied.
            not_undone=()
            if kept
            else tuple(
                a.name
                for a in trial.revert
                if (isinstance(a, SetWeight) and a.uuid in context.manual)
                or (isinstance(a, SetPinning) and context.dom0_pin_manual)
            ),
        )
        if kept:
            return Decision(
                verdict=verdict,
                findings=findings,
                state=replace(
                    st,
                    boosted=_boosts_kept(st.boosted, trial),
                    trial=None,
                    failures=0,
                    failed="",
                    cooldown=0,
                    recent=samples[-MEASURE:],
                    # Sharing under what was kept; these Jain figures count the domUs the
                    # change silenced, so they are stricter than the plain ones added later.
                    fairness=samples[-RESIDUAL_WINDOW:],
                    regime=now_regime,
                    accepted=mean,
                    kept="boost" if trial.boost else trial.purpose,
                    regressed=0,
                ),
            )
        failures = st.failures + 1
        give_back = trial.purpose in ("lower", "unpin")
        state = replace(
            st,
            trial=None,
            failures=failures,
            # a domU's raise that failed says nothing of dom0's weight
            failed="boost" if trial.boost else trial.purpose,
            cooldown=st.cooldown if give_back else COOLDOWN * 2 ** (failures - 1),
            give_back_cooldown=GIVE_BACK_COOLDOWN * 2 ** (failures - 1)
            if give_back
            else st.give_back_cooldown,
            recent=(),
            fairness=(),
            regime=now_regime,
        )
        return Decision(actions=trial.revert, findings=findings, state=state, verdict=verdict)

    # ------------------------------------------------------------------ proposing a change
    def _next_trial(  # noqa: PLR0917 (one call site, each argument a different input)
        self,
        obs: Observation,
        assessment: Assessment,
        context: PolicyContext,
        st: AdaptiveState,
        findings: tuple[Finding, ...],
        regime_changed: bool,
        joined: int,
    ) -> tuple[tuple[Action, ...], Trial] | None:
        dom0 = obs.dom0()
        load = dom0_load(obs)
        if dom0 is None or load is None:
            return None
        baseline = means(st.recent or ((assessment.aggregate_mbps, assessment.jain),))[2]
        wr = context.weight_range
        weight_free = dom0.uuid not in context.manual
        pinned = self._dom0_pinned(obs)
        estimate = wr.clamp(self._estimate(obs, load))
        # A raise that did not help says weights alone will not do it: pinning is the other
        # lever, tried without waiting out the raise's cooldown.
        raise_failed = st.failed == "raise"
        if findings and st.streak >= PERSIST and (st.cooldown == 0 or raise_failed):
            evidence = "; ".join(f.summary for f in findings)
            if st.cooldown == 0:
                boost = self._boost_trial(
                    obs, assessment, context, findings, load, baseline, st.boosted
                )
                if boost is not None:
                    return boost
            target = wr.clamp(estimate if estimate > dom0.weight * 1.2 else dom0.weight * 2)
            can_pin = (
                not pinned
                and not context.dom0_pin_manual
                and context.can_pin_dom0
                and obs.host_cpus >= 2
                and assessment.idle_pct >= 50.0 / obs.host_cpus
                # all dom0 uses must fit on the one pCPU it would be pinned to
                and load.cpu_pct <= DOM0_FITS * 100.0 / obs.host_cpus
            )
            # A failed raise is tried again once its cooldown is over, unless pinning (the
            # other lever, tried at once after it) is there to try instead. No raise when
            # dom0's share already covers all its vCPUs can use (or nothing shares its
            # pCPUs): it would change nothing, and be put back after every cooldown.
            raise_allowed = load.weight_can_help and (
                not raise_failed or (st.cooldown == 0 and not can_pin)
            )
            if weight_free and target > dom0.weight and raise_allowed:
                return self._weight_trial(dom0, target, "raise", evidence, baseline)
            if can_pin and (
                dom0.weight >= PIN_FROM_WEIGHT
                or not weight_free
                or raise_failed
                or not load.weight_can_help
            ):
                change, trial = self._pin_trial(obs, baseline, evidence)
                if raise_failed or not load.weight_can_help:
                    # What weights left over (or cannot reach) is small next to a tick's
                    # noise, as for the residual pin below: measured as long, kept on as
                    # small a gain.
                    trial = replace(trial, measure=RESIDUAL_MEASURE, gain=RESIDUAL_GAIN)
                return change, trial
            return None
        if findings or st.give_back_cooldown:
            return None
        unboost = self._unboost_trial(obs, st, baseline)
        if unboost is not None:
            return unboost
        if st.cooldown == 0 and not pinned and not context.dom0_pin_manual:
            residual = self._residual_pin_trial(obs, assessment, context, st, load)
            if residual is not None:
                return residual
        # CPU is given back only to domUs that would use it: with none, a give-back can
        # only lose what the raise or the pin won (Jain 0.999 -> 0.981 unpinned at receive
        # N = 8, every domU moving traffic and the CPU nearly all in use).
        cpu_needed = (
            st.clear >= GIVE_BACK_AFTER
            and assessment.idle_pct < IDLE_NEEDED_PCT
            and bool(wanting_cpu(obs, assessment))
        )
        if (
            cpu_needed
            and pinned
            and not context.dom0_pin_manual
            and not context.dom0_pinned_by_host
            and context.can_pin_dom0
        ):
            # Before the weight's own checks: a manual weight on dom0 is no reason to keep a
            # pinning the policy made.
            unpin = self._unpin_trial(obs, context, baseline)
            if unpin is not None:
                return unpin
        if not weight_free:
            return None
        # The policy lowers only what it raised: never below the weight dom0 had before xvrd
        # changed it (the operator's, or Xen's default), nor at all when it never did.
        floor = wr.clamp(context.original_weights.get(dom0.uuid, dom0.weight))
        if (
            joined
            and load.busy
            and load.credit_bound
            and load.weight_can_help
            and estimate > dom0.weight * 1.5
        ):
            # More domUs to serve and dom0 already uses what its weight earns: the new flows
            # are still ramping up, so waiting for a finding only lets them starve first.
            reason = (
                f"more traffic to serve: {joined} new domU(s), dom0 at {load.cpu_pct:.0f} % "
                f"against {load.due_pct:.0f} % its weight earns: estimate {estimate}"
            )
            return self._weight_trial(dom0, estimate, "raise", reason, baseline)
        if regime_changed and dom0.weight > max(floor, estimate) * 1.5:
            # Fewer or lighter network-active domUs: start again from the estimate.
            target = max(floor, estimate)
            reason = f"less traffic to serve: estimate {estimate} for {sum(st.regime)} domUs"
            return self._weight_trial(dom0, target, "lower", reason, baseline)
        if cpu_needed:
            target = max(floor, dom0.weight // 2)
            # Only as far as the credit arithmetic still covers what dom0 uses, with a margin
            # under the one detection allows: below that, dom0 runs out of credit and the
            # lowered weight raises a finding of its own; just above it, the next busy tick
            # does (among burners: lowered at tick 23, raised again at tick 30).
            if dom0.weight > floor and GIVE_BACK_BOUND * due_pct(obs, dom0, target) > load.cpu_pct:
                reason = (
                    f"give CPU back: no findings for {st.clear} ticks and only "
                    f"{assessment.idle_pct:.0f} % idle"
                )
                return self._weight_trial(dom0, target, "lower", reason, baseline)
        return None

    @staticmethod
    def _boost_trial(  # noqa: PLR0917 (one call site, each argument a different input)
        obs: Observation,
        assessment: Assessment,
        context: PolicyContext,
        findings: tuple[Finding, ...],
        load: Dom0Load,
        baseline: float,
        boosted: tuple[tuple[str, int, int], ...],
    ) -> tuple[tuple[Action, ...], Trial] | None:
        """Double the weight of network domUs crowded out by CPU-bound ones, so they stay
        UNDER and run when they have work; with dom0 short of credit too, or about to be,
        raise dom0 to its estimate in the same step, since raising either end of the path
        alone moves the bottleneck to the other."""
        short, _ = crowded_out(obs, assessment, {u: before for u, before, _ in boosted})
        wr = context.weight_range
        crowded = next((f for f in findings if f.kind == "crowded-out"), None)
        targets = [
            (d, wr.clamp(d.weight * 2))
            for d in short
            if d.uuid not in context.manual and wr.clamp(d.weight * 2) > d.weight
        ]
        if crowded is None or not targets:
            return None
        change: list[Action] = [
            SetWeight(d.uuid, d.name, new, f"crowded out: {crowded.summary}") for d, new in targets
        ]
        revert: list[Action] = [
            SetWeight(d.uuid, d.name, d.weight, f"raise did not help: back to {d.weight}")
            for d, _ in targets
        ]
        dom0 = obs.dom0()
        added = sum(new - d.weight for d, new in targets)
        dom0_short = next(
            (f.summary for f in findings if f.kind in ("collapse", "dom0-starved")), None
        )
        if dom0 is not None and dom0_short is None:
            # The raised weights join the total dom0's share is cut from, and the traffic
            # they let through needs dom0's CPU: a dom0 already using nearly all it would
            # then earn is the next bottleneck (a boost alone, then a second step for
            # dom0, took 12 intervals to settle among burners; at some seeds the boost
            # alone failed and nothing was tried for a cooldown).
            after = due_pct(obs, dom0, active=active_weight(obs) + added)
            if load.cpu_pct >= DOM0_CREDIT_BOUND * after:
                dom0_short = (
                    f"dom0 at {load.cpu_pct:.0f} % against {after:.0f} % its weight earns "
                    "once the crowded-out domUs' weights are raised"
                )
        estimate = wr.clamp(AdaptivePolicy._estimate(obs, load, added))
        if (
            dom0 is not None
            and dom0_short is not None
            and load.weight_can_help
            and dom0.uuid not in context.manual
            and estimate > dom0.weight * 1.2
        ):
            change.append(SetWeight(dom0.uuid, dom0.name, estimate, dom0_short))
            revert.append(
                SetWeight(
                    dom0.uuid, dom0.name, dom0.weight, f"raise did not help: back to {dom0.weight}"
                )
            )
        boost = tuple((d.uuid, d.weight, new) for d, new in targets)
        return tuple(change), Trial("raise", tuple(revert), baseline, boost=boost)

    @staticmethod
    def _unboost_trial(
        obs: Observation, st: AdaptiveState, baseline: float
    ) -> tuple[tuple[Action, ...], Trial] | None:
        """Give a raised domU its weight back once it moves no traffic any more, or no
        CPU-bound domU has competed with it for ``GIVE_BACK_AFTER`` ticks."""
        by_uuid = {d.uuid: d for d in obs.domus()}
        recent = {uuid for uuid, _, _ in st.seen}
        done = [
            (by_uuid[u], before, now)
            for u, before, now in st.boosted
            if u in by_uuid and (u not in recent or st.uncrowded >= GIVE_BACK_AFTER)
        ]
        if not done:
            return None
        change = tuple(
            SetWeight(
                d.uuid,
                d.name,
                before,
                "give CPU back: no CPU-bound domU competes with it"
                if d.uuid in recent
                else "give CPU back: it moves no traffic any more",
            )
            for d, before, _ in done
        )
        revert = tuple(
            SetWeight(d.uuid, d.name, now, f"giving back hurt: back to {now}") for d, _, now in done
        )
        return change, Trial(
            "lower", revert, baseline, unboost=frozenset(d.uuid for d, _, _ in done)
        )

    @staticmethod
    def _estimate(obs: Observation, load: Dom0Load, added: int = 0) -> int:
        """dom0's weight from the credit arithmetic: w0 = W d / (1 - d); ``added`` is weight
        the same step gives the domUs."""
        others = added + sum(d.weight for d in obs.domus() if (d.cpu_pct or 0.0) >= CPU_ACTIVE_PCT)
        demand = min(0.9, max(load.cpu_pct * DEMAND_MARGIN, 0.9 * load.capacity_pct) / 100.0)
        return int(others * demand / (1.0 - demand) + 0.5)

    @staticmethod
    def _weight_trial(
        dom0: DomainRates, new: int, purpose: str, reason: str, baseline: float
    ) -> tuple[tuple[Action, ...], Trial]:
        old = dom0.weight
        change = (SetWeight(dom0.uuid, dom0.name, new, reason),)
        revert = (SetWeight(dom0.uuid, dom0.name, old, f"{purpose} did not help: back to {old}"),)
        return change, Trial(purpose, revert, baseline)

    @staticmethod
    def _dom0_pinned(obs: Observation) -> bool:
        dom0 = obs.dom0()
        return dom0 is not None and dom0.pinning.is_pinned(obs.cpu_ids)

    def _pin_trial(
        self, obs: Observation, baseline: float, evidence: str
    ) -> tuple[tuple[Action, ...], Trial]:
        first = min(obs.cpu_ids)  # CPU 0 unless it is offline
        own = frozenset({first})
        rest = obs.cpu_ids - own
        reason = f"pin dom0 to pCPU {first}: {evidence}"
        change: list[Action] = []
        revert: list[Action] = []
        for d in sorted(obs.domains, key=lambda d: d.uuid):
            target = Pinning((own,) * d.vcpus) if d.is_dom0 else d.pinning.within(rest, d.vcpus)
            if d.pinning != target:
                change.append(SetPinning(d.uuid, d.name, target, reason))
                revert.append(SetPinning(d.uuid, d.name, d.pinning, "pinning did not help"))
        return tuple(change), Trial("pin", tuple(revert), baseline)

    def _residual_pin_trial(
        self,
        obs: Observation,
        assessment: Assessment,
        context: PolicyContext,
        st: AdaptiveState,
        load: Dom0Load,
    ) -> tuple[tuple[Action, ...], Trial] | None:
        """Pin dom0 when a raised weight cured the starvation but not all the unfairness,
        or left the link short of full.

        dom0 still needs a whole vCPU and shares the pCPUs with the domUs it serves, so each
        domU wake-up can still delay it; on its own pCPU nothing does. Tried only when dom0
        has been raised already (weights alone did not do it), is still busy but fits on one
        pCPU, and the domUs' CPU fits on the other pCPUs.
        """
        if (
            obs.host_cpus < 2
            or not context.can_pin_dom0
            or st.kept != "raise"
            or len(st.fairness) < RESIDUAL_WINDOW
            or not load.busy
        ):
            return None
        aggregate, jain, baseline = means(st.fairness)
        link = assessment.link_mbps
        efficiency = aggregate / link if link > 0 else 1.0
        domus_pct = sum(d.cpu_pct or 0.0 for d in obs.domus())
        room_pct = 100.0 * (obs.host_cpus - 1) / obs.host_cpus
        one_pcpu_pct = 100.0 / obs.host_cpus
        # Sharing short of fair counts only while a domU under the mean shows starvation:
        # one that wants less keeps Jain down whatever dom0 does.
        if (
            ((jain >= JAIN_FAIR or not st.starving) and efficiency >= EFFICIENCY_FULL)
            or domus_pct > PIN_HEADROOM * room_pct
            or load.cpu_pct > DOM0_FITS * one_pcpu_pct
        ):
            return None
        evidence = (
            f"Jain {jain:.3f}, efficiency {efficiency:.3f} over {len(st.fairness)} ticks after "
            f"dom0's raise, dom0 busy at {load.cpu_pct:.0f} %, domUs' {domus_pct:.0f} % fits "
            "beside it"
        )
        change, trial = self._pin_trial(obs, baseline, evidence)
        return change, replace(
            trial, measure=RESIDUAL_MEASURE, gain=RESIDUAL_GAIN, before=(aggregate, jain)
        )

    @staticmethod
    def _unpin_trial(
        obs: Observation, context: PolicyContext, baseline: float
    ) -> tuple[tuple[Action, ...], Trial] | None:
        """Put back the affinities xvrd set, and only those: a domU the operator pinned
        keeps its pinning."""
        change: list[Action] = []
        revert: list[Action] = []
        for d in sorted(obs.domains, key=lambda d: d.uuid):
            target = context.original_pinnings.get(d.uuid)
            if target is not None and target != d.pinning:
                change.append(SetPinning(d.uuid, d.name, target, "give CPU back: unpin dom0"))
                revert.append(SetPinning(d.uuid, d.name, d.pinning, "unpinning hurt"))
        if not change:
            return None
        return tuple(change), Trial("unpin", tuple(revert), baseline)

    def _keep_domus_off_dom0(self, obs: Observation, context: PolicyContext) -> tuple[Action, ...]:
        """While dom0 is pinned by the policy, a domU that appeared is kept off its pCPUs."""
        dom0 = obs.dom0()
        if (
            dom0 is None
            or context.dom0_pin_manual
            or context.dom0_pinned_by_host
            or not context.can_pin_dom0
            or not self._dom0_pinned(obs)
        ):
            return ()
        own = frozenset().union(*dom0.pinning.vcpus)
        rest = obs.cpu_ids - own
        if not rest:
            return ()
        return tuple(
            SetPinning(
                d.uuid, d.name, d.pinning.within(rest, d.vcpus), "keep domUs off dom0's pCPU"
            )
            for d in sorted(obs.domus(), key=lambda d: d.uuid)
            if any(c & own for c in d.pinning.vcpus)
        )
