"""The credit scheduler's mechanisms, each on its own."""

from __future__ import annotations

import pytest

from simulator.credit import (
    PRI_BOOST,
    PRI_OVER,
    CreditScheduler,
    Unit,
    VCpu,
)
from simulator.engine import NS_PER_MS, NS_PER_S, Engine


class Spinner:
    """Always has work: CPU-bound."""

    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        return Unit(NS_PER_MS, lambda _t: None)


class Sleeper:
    """Does 50 us of work per event, then blocks."""

    def __init__(self) -> None:
        self.pending = 0
        self.ran_at: list[int] = []

    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        if not self.pending:
            return None
        self.pending -= 1
        self.ran_at.append(now)
        return Unit(50_000, lambda _t: None)


def _share(sched: CreditScheduler, seconds: float) -> list[float]:
    sched.engine.run_until(int(seconds * NS_PER_S))
    total = sum(sched.cpu_ns(d.vcpus[0]) for d in sched.domains)
    return [sched.cpu_ns(d.vcpus[0]) / total for d in sched.domains]


def test_cpu_bound_domains_share_cpu_in_proportion_to_weight() -> None:
    """Three spinners on one pCPU with weights 256, 512, 1024 get about 1:2:4."""
    engine = Engine()
    sched = CreditScheduler(engine, 1)
    engine.after_event = sched.flush
    for domid, weight in enumerate((256, 512, 1024), start=1):
        sched.add_domain(domid, weight, 0, [Spinner()])
    for d in sched.domains:
        sched.wake(d.vcpus[0])
    sched.flush()
    shares = _share(sched, 30)
    for got, want in zip(shares, (1 / 7, 2 / 7, 4 / 7), strict=True):
        assert abs(got - want) < 0.03, shares


def test_cap_limits_a_domain_even_on_an_idle_host() -> None:
    """A spinner capped at 30 % of a CPU gets about 30 % while the CPU is otherwise idle."""
    engine = Engine()
    sched = CreditScheduler(engine, 1)
    engine.after_event = sched.flush
    dom = sched.add_domain(1, 256, 30, [Spinner()])
    sched.wake(dom.vcpus[0])
    sched.flush()
    engine.run_until(30 * NS_PER_S)
    used = sched.cpu_ns(dom.vcpus[0]) / (30 * NS_PER_S)
    assert 0.22 <= used <= 0.38, used


def test_woken_under_vcpu_preempts_an_over_one() -> None:
    """A sleeper that wakes while a spinner (OVER after a while) runs gets the pCPU at once."""
    engine = Engine()
    sched = CreditScheduler(engine, 1, context_switch_ns=0, cache_refill_ns=0)
    engine.after_event = sched.flush
    spin = sched.add_domain(1, 256, 0, [Spinner()])
    sleeper = Sleeper()
    sleep_dom = sched.add_domain(2, 256, 0, [sleeper])
    sched.wake(spin.vcpus[0])
    sched.flush()
    engine.run_until(NS_PER_S + 1)
    # Put the running spinner where a busy dom0 sits: out of credit, OVER.
    spin.vcpus[0].credit = -200
    spin.vcpus[0].pri = PRI_OVER

    def event() -> None:
        sleeper.pending = 1
        sched.wake(sleep_dom.vcpus[0])

    at = engine.now + 1234
    engine.at(at, event)
    engine.run_until(at + NS_PER_MS)
    assert sleeper.ran_at == [at]


def test_wake_boosts_an_under_vcpu_but_not_an_over_one() -> None:
    """BOOST is for UNDER vCPUs woken by an event."""
    engine = Engine()
    sched = CreditScheduler(engine, 2)
    engine.after_event = sched.flush
    dom = sched.add_domain(1, 256, 0, [Sleeper()])
    v = dom.vcpus[0]
    sched.wake(v)
    assert v.pri == PRI_BOOST


def test_pinned_vcpu_runs_only_on_its_cpus() -> None:
    """Two spinners pinned to pCPU 1 never run on pCPU 0, which stays idle."""
    engine = Engine()
    sched = CreditScheduler(engine, 2)
    engine.after_event = sched.flush
    doms = [sched.add_domain(i, 256, 0, [Spinner()]) for i in (1, 2)]
    for d in doms:
        sched.set_affinity(d.vcpus[0], frozenset({1}))
        sched.wake(d.vcpus[0])
    sched.flush()
    engine.run_until(5 * NS_PER_S)
    assert sched.idle_ns(sched.pcpus[0]) == 5 * NS_PER_S
    busy = sum(sched.cpu_ns(d.vcpus[0]) for d in doms)
    assert busy > 4.9 * NS_PER_S


def test_a_vcpu_waiting_in_a_runqueue_can_be_pinned_elsewhere() -> None:
    """Three spinners pinned to pCPU 1: one waits in its runqueue. Pinning it to pCPU 0
    takes it out of pCPU 1's queue (it used to be looked for in pCPU 0's, and the
    operator's pin-dom0 failed as an invalid setting) and it runs there."""
    engine = Engine()
    sched = CreditScheduler(engine, 2)
    engine.after_event = sched.flush
    doms = [sched.add_domain(i, 256, 0, [Spinner()]) for i in (1, 2, 3)]
    for d in doms:
        sched.set_affinity(d.vcpus[0], frozenset({1}))
        sched.wake(d.vcpus[0])
    sched.flush()
    engine.run_until(NS_PER_S)
    waiting = next(d.vcpus[0] for d in doms if d.vcpus[0].queued)
    assert waiting.processor == 1
    sched.set_affinity(waiting, frozenset({0}))
    assert waiting not in sched.pcpus[1].runq
    engine.run_until(2 * NS_PER_S)
    assert sched.idle_ns(sched.pcpus[0]) < NS_PER_S + NS_PER_S // 100


def test_context_switches_cost_hypervisor_time() -> None:
    """With a switch cost, domain time plus idle time falls short of the pCPU's time."""
    engine = Engine()
    sched = CreditScheduler(engine, 1, context_switch_ns=100_000, cache_refill_ns=0)
    engine.after_event = sched.flush
    sleeper = Sleeper()
    spin = sched.add_domain(1, 256, 0, [Spinner()])
    dom = sched.add_domain(2, 256, 0, [sleeper])
    sched.wake(spin.vcpus[0])

    def tick(n: int) -> None:
        sleeper.pending = 1
        sched.wake(dom.vcpus[0])
        if n:
            engine.at(engine.now + NS_PER_MS, tick, n - 1)

    engine.at(0, tick, 999)
    engine.run_until(NS_PER_S)
    accounted = sum(sched.cpu_ns(d.vcpus[0]) for d in sched.domains) + sched.idle_ns(sched.pcpus[0])
    assert sched.context_switches >= 1000
    assert NS_PER_S - accounted >= 0.9 * sched.context_switches * 100_000


def test_weight_outside_xen_range_is_refused() -> None:
    engine = Engine()
    sched = CreditScheduler(engine, 1)
    dom = sched.add_domain(1, 256, 0, [Spinner()])
    for bad in (0, 65536):
        with pytest.raises(ValueError, match=r"\[1, 65535\]"):
            sched.set_weight(dom, bad)
    assert dom.weight == 256
