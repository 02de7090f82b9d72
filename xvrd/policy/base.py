"""The policy slot: a pure step from what was observed to what to change.

A policy gets the observation, its assessment, the context the operator set (manual
overrides, hold, mode) and its own state from the previous tick, and returns actions and its
new state. It never calls the backend, so it can be tested with hand-made observations and
driven by the simulator at any speed. The daemon, not the policy, enforces overrides and
hold: an action on an overridden domain, or any action while held, is dropped before the
actuator (and logged as such), whatever a policy returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from xvrd.analysis import Assessment, Finding
from xvrd.backends.base import Pinning, WeightRange
from xvrd.sampler import Observation


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Change one domain's credit weight."""

    uuid: str
    name: str
    weight: int
    reason: str


@dataclass(frozen=True, slots=True)
class SetPinning:
    """Change one domain's vCPU affinity (dom0 on its own pCPUs, domUs kept off them)."""

    uuid: str
    name: str
    pinning: Pinning
    reason: str


Action = SetWeight | SetPinning


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What the operator set, as the policy must see it."""

    weight_range: WeightRange
    manual: frozenset[str] = frozenset()  # UUIDs with a manual weight
    dom0_pin_manual: bool = False
    # False where the host cannot pin dom0 (the driver lists no dom0).
    can_pin_dom0: bool = True
    held: bool = False
    mode: str = "auto"  # "advise": decide and report, change nothing
    # Weights before xvrd changed them (UUID -> weight), from the state file, of the domains
    # that still have the weight xvrd set (not one set by hand since): what survives a crash
    # of the daemon, unlike the policy's own memory.
    original_weights: Mapping[str, int] = field(default_factory=dict)
    # Affinities xvrd set, undone (UUID -> each vCPU's affinity before xvrd, where the host
    # still holds xvrd's; one pinned by hand since keeps its own): what giving back the
    # policy's pin puts back. A domain xvrd never pinned is not in it.
    original_pinnings: Mapping[str, Pinning] = field(default_factory=dict)
    # dom0 is pinned, and not by xvrd: the host's own affinity (Xen's dom0_vcpus_pin at
    # boot, an operator's xl vcpu-pin). The policy neither unpins it nor moves domUs for it.
    dom0_pinned_by_host: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a change the policy tried turned out: kept or put back, on the fair throughput
    (aggregate x Jain) it was judged on, with aggregate and Jain before and after, each the
    mean over the same ticks (so their product is close to, not exactly, the mean of the
    products)."""

    change: str
    kept: bool
    objective_before: float
    objective_after: float
    rule: str  # what it had to achieve, e.g. "+3 %"
    aggregate_before: float
    jain_before: float
    aggregate_after: float
    jain_after: float
    not_undone: tuple[str, ...] = ()  # domains a manual setting keeps from being put back

    def summary(self) -> str:
        if self.kept:
            outcome = "kept"
        elif self.not_undone:
            outcome = f"put back except {', '.join(dict.fromkeys(self.not_undone))} (manual)"
        else:
            outcome = "put back"
        return (
            f"{self.change}: {outcome}, fair throughput "
            f"{self.objective_before:.0f} -> {self.objective_after:.0f} Mb/s (needed "
            f"{self.rule}; aggregate {self.aggregate_before:.0f} -> {self.aggregate_after:.0f}"
            f" Mb/s, Jain {self.jain_before:.3f} -> {self.jain_after:.3f})"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "change": self.change,
            "kept": self.kept,
            "objective_before_mbps": round(self.objective_before, 1),
            "objective_after_mbps": round(self.objective_after, 1),
            "rule": self.rule,
            "aggregate_before_mbps": round(self.aggregate_before, 1),
            "jain_before": round(self.jain_before, 4),
            "aggregate_after_mbps": round(self.aggregate_after, 1),
            "jain_after": round(self.jain_after, 4),
            "not_undone": list(self.not_undone),
            "summary": self.summary(),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's output for one tick."""

    actions: tuple[Action, ...] = ()
    findings: tuple[Finding, ...] = ()
    state: Any = None
    verdict: Verdict | None = None  # a change judged this tick
    # The tick's figures are partial (domains destroyed during it took their share of its
    # traffic): no evidence either way, so the last tick's findings stand, not these.
    partial: bool = False


class Policy(Protocol):
    """Decides what to change. ``state`` is whatever it returned last time (None at start)."""

    name: str

    def decide(
        self,
        observation: Observation,
        assessment: Assessment,
        context: PolicyContext,
        state: Any,
    ) -> Decision: ...


class NoopPolicy:
    """Changes nothing: the daemon observes, reports and honours overrides only."""

    name = "noop"

    def decide(
        self,
        observation: Observation,
        assessment: Assessment,
        context: PolicyContext,
        state: Any,
    ) -> Decision:
        return Decision(state=state)
