"""The policy slot: a pure step from what was seen to what to change.

A policy gets the observation, its assessment, its own previous state and the operator's
overrides, and returns actions plus its next state. It never touches the host: the actuator
applies (or, under hold or override, skips) what it asks for. The adaptive policy of the next
issue implements `Policy`; until then `NoopPolicy` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from xvrd.analysis import Assessment
from xvrd.backends.base import Pinning
from xvrd.sampler import Observation

Setting = Literal["weight", "cap", "pinning"]


@dataclass(frozen=True, slots=True)
class Action:
    """Set one setting of one domain, and why."""

    uuid: str
    setting: Setting
    value: int | Pinning
    reason: str


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the operator fixed by hand; always wins over the policy."""

    manual_weights: dict[str, int]  # UUID -> weight
    dom0_pin: frozenset[int] | None
    held: bool


@dataclass(frozen=True, slots=True)
class Decision:
    actions: tuple[Action, ...]
    state: object


class Policy(Protocol):
    """A pure decision step; ``state`` is the policy's own, opaque to the daemon."""

    name: str

    def initial_state(self) -> object:
        """The state before the first observation."""
        ...

    def decide(
        self, obs: Observation, assessment: Assessment, state: object, overrides: Overrides
    ) -> Decision:
        """Actions for this tick and the state to pass to the next."""
        ...


class NoopPolicy:
    """Observes and changes nothing: the loop runs, the host keeps its settings."""

    name = "noop"

    def initial_state(self) -> object:
        return None

    def decide(
        self, obs: Observation, assessment: Assessment, state: object, overrides: Overrides
    ) -> Decision:
        return Decision((), state)


class StaticDom0Policy:
    """Holds dom0 at one configured weight: the report's static cure, with no adaptation.

    Useful on a host whose load is known, and as a policy whose actions are easy to see.
    """

    name = "static"

    def __init__(self, dom0_weight: int) -> None:
        self.dom0_weight = dom0_weight

    def initial_state(self) -> object:
        return None

    def decide(
        self, obs: Observation, assessment: Assessment, state: object, overrides: Overrides
    ) -> Decision:
        actions = tuple(
            Action(d.domain.uuid, "weight", self.dom0_weight, "static dom0 weight from config")
            for d in obs.domains
            if d.domain.is_dom0 and d.sched.weight != self.dom0_weight
        )
        return Decision(actions, state)


def make_policy(name: str, *, dom0_weight: int) -> Policy:
    """The policy a config names."""
    if name == "static":
        return StaticDom0Policy(dom0_weight)
    return NoopPolicy()
