"""Rules of the adaptive policy on hand-made observations, where each condition is exact:
what a raised dom0 weight leaves unfair, and trials overtaken by domains coming or going."""

from __future__ import annotations

from dataclasses import replace

from xvrd.analysis import assess
from xvrd.backends.base import XEN_WEIGHT_RANGE, Pinning
from xvrd.policy.adaptive import RESIDUAL_WINDOW, AdaptivePolicy, AdaptiveState
from xvrd.policy.base import Decision, PolicyContext, SetPinning
from xvrd.sampler import DomainRates, Observation

EVERYWHERE = Pinning((frozenset({0, 1}),))
CONTEXT = PolicyContext(
    weight_range=XEN_WEIGHT_RANGE,
    manual=frozenset(),
    dom0_pin_manual=False,
    held=False,
    mode="auto",
)
#: Eight receivers filling the link a little unevenly: Jain about 0.986.
RATES = (145.0, 135.0, 125.0, 120.0, 115.0, 115.0, 105.0, 100.0)


def domain(domid: int, weight: int, cpu_pct: float, rx_mbps: float = 0.0) -> DomainRates:
    name = "Domain-0" if domid == 0 else f"dom{domid}"
    return DomainRates(
        uuid=f"uuid-{domid:02d}",
        domid=domid,
        name=name,
        creation_seq=domid,
        vcpus=1,
        weight=weight,
        cap=0,
        pinning=EVERYWHERE,
        rx_mbps=rx_mbps,
        tx_mbps=rx_mbps / 30,  # the ACKs
        rx_pps=rx_mbps * 86,
        tx_pps=rx_mbps * 43,
        rx_drops_ps=0.0,
        tx_drops_ps=0.0,
        cpu_pct=cpu_pct,
    )


def observation(domus_cpu_pct: float, dom0_cpu_pct: float = 48.0) -> Observation:
    domus = tuple(
        domain(i, 256, domus_cpu_pct / len(RATES), rate) for i, rate in enumerate(RATES, start=1)
    )
    return Observation(0, 2.0, 2, (domain(0, 4096, dom0_cpu_pct), *domus))


def after_a_kept_raise(obs: Observation, ticks: int) -> list[Decision]:
    """Ticks of the same observation once the policy has kept a raise of dom0's weight."""
    policy = AdaptivePolicy()
    state: AdaptiveState | None = None
    decisions = []
    for tick in range(2 + ticks):
        if tick == 2:
            assert state is not None
            state = replace(state, accepted=900.0)
        decision = policy.decide(obs, assess(obs, 984.0, 0.5), CONTEXT, state)
        state = decision.state
        decisions.append(decision)
    return decisions[2:]


def pinned_dom0(decisions: list[Decision]) -> bool:
    return any(isinstance(a, SetPinning) and a.name == "Domain-0" for d in decisions
               for a in d.actions)  # fmt: skip


def test_dom0_is_pinned_when_sharing_stays_short_of_fair_and_the_domus_fit() -> None:
    decisions = after_a_kept_raise(observation(domus_cpu_pct=40.0), RESIDUAL_WINDOW + 1)
    assert pinned_dom0(decisions)
    reason = next(a.reason for d in decisions for a in d.actions)
    assert reason.startswith("pin dom0 to pCPU 0: Jain 0.9")


def test_no_pinning_when_the_domus_would_not_fit_on_the_other_pcpu() -> None:
    assert not pinned_dom0(after_a_kept_raise(observation(domus_cpu_pct=48.0), 20))


def test_no_pinning_when_dom0_has_time_to_spare() -> None:
    """Uneven rates with a dom0 at ease are the domUs' own doing (application limits)."""
    obs = observation(domus_cpu_pct=40.0, dom0_cpu_pct=30.0)
    assert not pinned_dom0(after_a_kept_raise(obs, 20))


def test_no_pinning_without_a_raise_first() -> None:
    """Weights come first: the residual rule only follows a kept raise."""
    policy = AdaptivePolicy()
    obs = observation(domus_cpu_pct=40.0)
    state = None
    for _ in range(20):
        decision = policy.decide(obs, assess(obs, 984.0, 0.5), CONTEXT, state)
        assert not decision.actions
        state = decision.state


def test_a_trial_overtaken_by_domains_leaving_ends_unjudged() -> None:
    """The tick in which domains left lacks their traffic: judged on it, any change would
    look harmful and be put back. It stays, and the policy starts from the new set."""
    starved = (300.0, 280.0, 200.0, 80.0, 30.0, 15.0, 10.0, 5.0)
    policy = AdaptivePolicy()
    state = None
    for _ in range(3):
        obs = observation(domus_cpu_pct=30.0, dom0_cpu_pct=47.0)
        obs = replace(obs, domains=(
            replace(obs.domains[0], weight=256),
            *(replace(d, rx_mbps=r) for d, r in zip(obs.domains[1:], starved, strict=True)),
        ))  # fmt: skip
        decision = policy.decide(obs, assess(obs, 984.0, 0.5), CONTEXT, state)
        state = decision.state
    assert isinstance(state, AdaptiveState)
    assert state.trial is not None
    assert state.trial.purpose == "raise"
    # Six leave; the two left happen to be slow ones, so the objective falls.
    two_left = replace(obs, domains=(obs.domains[0], *obs.domains[-2:]))
    reasons = []
    for _ in range(4):
        decision = policy.decide(two_left, assess(two_left, 984.0, 0.5), CONTEXT, state)
        state = decision.state
        reasons += [a.reason for a in decision.actions]
    assert not [r for r in reasons if "did not help" in r]


def test_a_change_that_silences_domus_is_not_judged_fairer_for_it() -> None:
    """Among the domUs still moving traffic the sharing would look perfect; the ones the
    change silenced count at zero, so the change is put back."""
    policy = AdaptivePolicy()
    state = None
    obs = observation(domus_cpu_pct=30.0, dom0_cpu_pct=47.0)
    dom0 = replace(obs.domains[0], weight=256)

    def with_rates(rates: tuple[float, ...]) -> Observation:
        domus = (
            replace(d, rx_mbps=r, tx_mbps=r / 30)
            for d, r in zip(obs.domains[1:], rates, strict=True)
        )
        return replace(obs, domains=(dom0, *domus))

    starved = with_rates((300.0, 280.0, 200.0, 80.0, 30.0, 15.0, 10.0, 5.0))
    for _ in range(3):
        decision = policy.decide(starved, assess(starved, 984.0, 0.5), CONTEXT, state)
        state = decision.state
    assert isinstance(state, AdaptiveState)
    assert state.trial is not None
    two_take_all = with_rates((470.0, 470.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    assert assess(two_take_all, 984.0, 0.5).jain == 1.0  # among the two still active
    reasons = []
    for _ in range(3):
        decision = policy.decide(two_take_all, assess(two_take_all, 984.0, 0.5), CONTEXT, state)
        state = decision.state
        reasons += [a.reason for a in decision.actions]
    assert reasons == ["raise did not help: back to 256"]
