"""Whatever the observations, the adaptive policy stays within its bounds (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from xvrd.backends.base import XEN_WEIGHT_RANGE, Pinning
from xvrd.policy.base import PolicyContext, SetPinning, SetWeight
from xvrd.sampler import DomainRates, Observation

from .conftest import drive

#: Online CPUs of the hosts drawn: two in a row, and two with an offline CPU between them.
HOSTS = (frozenset({0, 1}), frozenset({0, 2}), frozenset({1, 2, 3}))


@st.composite
def observation(draw: Any, n: int, online: frozenset[int]) -> Observation:
    rows = []
    # A busy host (little idle CPU) is where domUs crowd each other out.
    low = draw(st.sampled_from([0.0, 0.0, 0.9])) * 100.0 / (n + 1)
    for i in range(n + 1):
        # Some domUs move nothing (CPU burners, idle ones).
        rx = draw(st.just(0.0) | st.floats(0, 1000, allow_nan=False))
        tx = draw(st.just(0.0) | st.floats(0, 1000, allow_nan=False))
        cpu = draw(st.floats(low, 100.0 / (n + 1), allow_nan=False))
        weight = draw(st.integers(1, 65535))
        # Unpinned as the host reports it (offline CPUs set too), or on one online CPU.
        affinities = [frozenset(range(max(online) + 1)), *(frozenset({c}) for c in online)]
        pinning = Pinning((draw(st.sampled_from(affinities)),))
        drops = draw(st.sampled_from([0.0, 0.0, 5.0]))
        rows.append(
            DomainRates(
                f"uuid-{i:02d}",
                i,
                f"dom{i}",
                i,
                1,
                weight,
                0,
                pinning,
                0.0 if i == 0 else rx,
                0.0 if i == 0 else tx,
                rx * 80,
                tx * 80,
                drops,
                0.0,
                cpu,
            )
        )
    return Observation(0, 2.0, online, tuple(rows))


@st.composite
def run(draw: Any) -> tuple[list[Observation], PolicyContext, list[int]]:
    n = draw(st.integers(0, 8))
    online = draw(st.sampled_from(HOSTS))
    ticks = draw(st.lists(observation(n, online), min_size=1, max_size=8))
    uuids = [f"uuid-{i:02d}" for i in range(n + 1)]
    manual = frozenset(draw(st.lists(st.sampled_from(uuids), max_size=3)))
    context = PolicyContext(
        weight_range=XEN_WEIGHT_RANGE,
        manual=manual,
        dom0_pin_manual=draw(st.booleans()),
        can_pin_dom0=draw(st.booleans()),
        held=draw(st.booleans()),
        mode=draw(st.sampled_from(["auto", "advise"])),
    )
    order = draw(st.permutations(list(range(n + 1))))
    return ticks, context, order


def shuffled(obs: Observation, order: list[int]) -> Observation:
    return Observation(obs.taken_ns, obs.interval_s, obs.cpu_ids,
                       tuple(obs.domains[i] for i in order))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(run())
def test_weights_in_range_overrides_and_hold_respected(
    case: tuple[list[Observation], PolicyContext, list[int]],
) -> None:
    ticks, context, _ = case
    for decision in drive(ticks, context):
        for action in decision.actions:
            if isinstance(action, SetWeight):
                assert XEN_WEIGHT_RANGE.low <= action.weight <= XEN_WEIGHT_RANGE.high
                assert action.uuid not in context.manual
            if isinstance(action, SetPinning):
                assert not context.dom0_pin_manual
                # Pinned where the host can pin dom0, never a vCPU onto offline CPUs
                # alone (a revert may put back an affinity with offline CPUs beside).
                online = ticks[0].cpu_ids
                assert context.can_pin_dom0
                assert all(cpus & online for cpus in action.pinning.vcpus)
        if context.held:
            assert decision.actions == ()


@settings(max_examples=300, deadline=None)
@given(run())
def test_decision_does_not_depend_on_the_order_domains_are_listed(
    case: tuple[list[Observation], PolicyContext, list[int]],
) -> None:
    ticks, context, order = case
    straight = drive(ticks, context)
    permuted = drive([shuffled(t, order) for t in ticks], context)
    for a, b in zip(straight, permuted, strict=True):
        assert set(a.actions) == set(b.actions)
        assert {f.kind for f in a.findings} == {f.kind for f in b.findings}


@settings(max_examples=150, deadline=None)
@given(run())
def test_a_domu_weight_rises_only_on_a_crowding_finding_and_otherwise_returns_to_its_own(
    case: tuple[list[Observation], PolicyContext, list[int]],
) -> None:
    """A domU's weight goes up only with the finding that justifies it; any other change
    puts back a weight that domU had (a revert, or a boost given back)."""
    ticks, context, _ = case
    had: dict[str, set[int]] = {}
    for obs, decision in zip(ticks, drive(ticks, context), strict=True):
        for d in obs.domus():
            had.setdefault(d.uuid, set()).add(d.weight)
        kinds = {f.kind for f in decision.findings}
        for action in decision.actions:
            if isinstance(action, SetWeight) and action.uuid != "uuid-00":
                assert "crowded-out" in kinds or action.weight in had[action.uuid]
