"""The Xen credit scheduler as in Xen 3.0/3.1 (the version the reference measurements used).

Mechanisms, each as the hypervisor does it:

* Credits are debited by *sampling*: every 10 ms tick, the vCPU running on that pCPU loses
  ``CREDITS_PER_TICK``; a vCPU that wakes, runs briefly and blocks between ticks is rarely
  charged. This is why dom0, which runs most of the time, ends OVER while packet-driven domUs
  stay UNDER.
* Every 30 ms the accounting hands ``CREDITS_PER_ACCT`` per pCPU to the *active* domains in
  proportion to their weights (capped domains get at most their cap; a domain gets at most
  what its vCPUs can use, the rest is shared out again). Credit >= 0 means UNDER, < 0 OVER.
  A capped vCPU owing more than its share of one period's capped credit is parked (paused)
  until an accounting brings it back to >= 0. Being sampled, a cap is a limit on average
  and can be overshot by a tick's worth.
  A vCPU that accumulates more than one slice of credit stops being active (earns nothing)
  until it is charged again; credit is bounded below at minus one slice.
* A vCPU woken while UNDER is BOOSTed; BOOST ends at the next tick that finds it running.
* A woken vCPU goes on the run queue of the pCPU it last ran on; if its priority is strictly
  higher than that pCPU's current vCPU, it preempts it at once. Busy pCPUs tickle idle ones.
* Run queues are ordered by priority, FIFO inside a priority; a preempted vCPU goes behind
  the others of its priority. A pCPU whose best local candidate is OVER or idle steals a
  better one from its peers (idle pCPUs steal anything runnable).
* A vCPU runs for at most a 30 ms slice before its pCPU reschedules.
* Switching a pCPU to another domain's vCPU costs ``CONTEXT_SWITCH_NS`` of hypervisor time,
  then ``CACHE_REFILL_NS`` of the incoming vCPU's time without progress (cold caches, TLB).
* vCPU affinity (pinning) restricts where a vCPU is placed, woken and stolen to.

The scheduler knows nothing about networking. Guests give it work as `Unit`s through
`Guest.plan`; a unit runs to completion unless preempted, and a preempted unit resumes where
it stopped when its vCPU runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from simulator.engine import NS_PER_MS, NS_PER_US, Engine

PRI_BOOST = 0
PRI_UNDER = -1
PRI_OVER = -2
PRI_IDLE = -64

TICK_NS = 10 * NS_PER_MS  # Xen: CSCHED_MSECS_PER_TICK
TICKS_PER_ACCT = 3  # Xen: CSCHED_TICKS_PER_ACCT (30 ms accounting period)
TSLICE_NS = 30 * NS_PER_MS  # Xen: CSCHED_MSECS_PER_TSLICE
CREDITS_PER_TICK = 100  # Xen: CSCHED_CREDITS_PER_TICK
CREDITS_PER_TSLICE = CREDITS_PER_TICK * 3
CREDITS_PER_ACCT = CREDITS_PER_TSLICE  # per pCPU and accounting period

#: Direct cost of switching a pCPU between vCPUs of different domains: saving and restoring
#: state, the page-table and segment reload. Hypervisor time: the pCPU is busy but no domain
#: is charged (XenMon does not attribute it either). About 3 us on a 2 GHz Opteron 246.
CONTEXT_SWITCH_NS = 3 * NS_PER_US
#: What a vCPU loses after a switch while it refills the caches and TLB the previous domain
#: evicted (K8: 64 KiB L1D, 1 MiB L2, TLB flushed on every address-space switch). Charged to
#: the incoming vCPU as time without progress. Chosen within the 10 to 100 us reported for
#: cache-cold restarts of network code on K8-class CPUs, as the value at which receive on
#: 8 domUs at default weights loses as much fairness as the reference testbed shows.
CACHE_REFILL_NS = 40 * NS_PER_US

WEIGHT_MIN = 1
WEIGHT_MAX = 65535


class Unit:
    """A piece of work a vCPU executes; ``commit`` applies its effects when it completes."""

    __slots__ = ("commit", "remaining_ns")

    def __init__(self, remaining_ns: int, commit: Callable[[int], None]) -> None:
        self.remaining_ns = remaining_ns
        self.commit = commit


def no_effect(_t: int) -> None:
    """The commit of a unit whose completion changes nothing but the time it took."""


class Guest(Protocol):
    """What runs inside a vCPU: asked for its next unit of work, None meaning it blocks."""

    def plan(self, vcpu: VCpu, now: int) -> Unit | None: ...


class Domain:
    """A scheduled domain: weight, cap (% of one pCPU, 0 = none) and its vCPUs."""

    __slots__ = ("active", "alive", "cap", "domid", "vcpus", "weight")

    def __init__(self, domid: int, weight: int, cap: int) -> None:
        self.domid = domid
        self.weight = weight
        self.cap = cap
        self.vcpus: list[VCpu] = []
        self.active = False
        self.alive = True


class VCpu:
    """One virtual CPU and its credit-scheduler state."""

    __slots__ = (
        "active",
        "affinity",
        "cpu_ns",
        "credit",
        "dom",
        "guest",
        "index",
        "on_cpu",
        "parked",
        "pri",
        "processor",
        "queued",
        "run_start",
        "unit",
        "woken",
    )

    def __init__(self, dom: Domain, index: int, guest: Guest, processor: int, ncpus: int) -> None:
        self.dom = dom
        self.index = index
        self.guest = guest
        self.credit = 0
        self.pri = PRI_UNDER
        self.processor = processor
        self.affinity: frozenset[int] = frozenset(range(ncpus))
        self.active = False
        self.parked = False
        self.queued = False  # on some pCPU's run queue
        self.on_cpu: PCpu | None = None  # running on this pCPU
        self.woken = False  # has work or a pending event (runnable when not running)
        self.unit: Unit | None = None  # interrupted unit to resume
        self.cpu_ns = 0
        self.run_start = 0

    def resched_pending(self) -> bool:
        """Running, and its pCPU is to reschedule: a woken vCPU is about to preempt it."""
        pc = self.on_cpu
        return pc is not None and pc.need_resched


class PCpu:
    """A physical CPU: its run queue, current vCPU, the unit in progress and idle time."""

    __slots__ = (
        "cpu",
        "current",
        "gen",
        "idle_ns",
        "idle_start",
        "last_vcpu",
        "need_resched",
        "runq",
        "slice_end",
        "unit_start",
    )

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.runq: list[VCpu] = []
        self.current: VCpu | None = None
        self.last_vcpu: VCpu | None = None
        self.gen = 0
        self.unit_start = 0
        self.slice_end = 0
        self.need_resched = False
        self.idle_ns = 0
        self.idle_start = 0


class CreditScheduler:
    """Credit scheduling of vCPUs on pCPUs, driven by the engine's virtual clock."""

    def __init__(
        self,
        engine: Engine,
        ncpus: int,
        context_switch_ns: int | None = None,
        cache_refill_ns: int | None = None,
    ) -> None:
        if ncpus < 1:
            raise ValueError("ncpus must be >= 1")
        self.engine = engine
        self.pcpus = [PCpu(c) for c in range(ncpus)]
        self.domains: list[Domain] = []
        self.context_switch_ns = (
            CONTEXT_SWITCH_NS if context_switch_ns is None else context_switch_ns
        )
        self.cache_refill_ns = CACHE_REFILL_NS if cache_refill_ns is None else cache_refill_ns
        self.context_switches = 0
        self._resched: list[PCpu] = engine.deferred
        self._tick_count = 0
        for pc in self.pcpus:
            # Per-pCPU tickers are not aligned in Xen; stagger them evenly.
            engine.at(TICK_NS + pc.cpu * TICK_NS // ncpus, self._tick, pc)

    # ----------------------------------------------------------------------------- domains
    def add_domain(self, domid: int, weight: int, cap: int, guests: list[Guest]) -> Domain:
        dom = Domain(domid, weight, cap)
        for i, guest in enumerate(guests):
            processor = (domid + i) % len(self.pcpus)
            dom.vcpus.append(VCpu(dom, i, guest, processor, len(self.pcpus)))
        self.domains.append(dom)
        return dom

    def remove_domain(self, dom: Domain) -> None:
        now = self.engine.now
        for v in dom.vcpus:
            v.woken = False
            v.unit = None
            if v.queued:
                self._dequeue(v)
            if v.on_cpu is not None:
                pc = v.on_cpu
                self._account_stop(v, now)
                pc.current = None
                pc.gen += 1
                v.on_cpu = None
                pc.idle_start = now
                self._mark(pc)
        dom.active = False
        dom.alive = False
        self.domains.remove(dom)
        self.flush()

    def set_guest(self, v: VCpu, guest: Guest) -> None:
        """What runs in ``v`` changes (a workload phase): the old guest's unfinished work is
        dropped, and a running vCPU plans the new guest's at once (or blocks), so no end of
        the old work is left due on its pCPU."""
        v.guest = guest
        v.unit = None
        pc = v.on_cpu
        if pc is not None:
            now = self.engine.now
            pc.gen += 1  # the old unit's end is void
            self._start_unit(pc, v, now, max(0, pc.unit_start - now))

    def set_weight(self, dom: Domain, weight: int) -> None:
        if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            raise ValueError(f"weight must be in [{WEIGHT_MIN}, {WEIGHT_MAX}], got {weight}")
        dom.weight = weight

    def set_cap(self, dom: Domain, cap: int) -> None:
        limit = 100 * len(self.pcpus)
        if not 0 <= cap <= limit:
            raise ValueError(f"cap must be in [0, {limit}] (% of one CPU, 0 = none), got {cap}")
        dom.cap = cap

    def set_affinity(self, v: VCpu, cpus: frozenset[int]) -> None:
        if not cpus or any(c < 0 or c >= len(self.pcpus) for c in cpus):
            raise ValueError(f"CPU set must be a non-empty subset of 0..{len(self.pcpus) - 1}")
        v.affinity = cpus
        if v.processor in cpus:
            pass  # as Xen: a vCPU whose pCPU stays allowed keeps its place
        elif v.queued:
            # Off the runqueue it waits in (v.processor's) before it moves, as vcpu_migrate.
            self._dequeue(v)
            self._enqueue(self.pcpus[min(cpus)], v)
            self._tickle(v)
        else:
            v.processor = min(cpus)
        if v.on_cpu is not None and v.on_cpu.cpu not in cpus:
            self._mark(v.on_cpu)
        self.flush()

    # ----------------------------------------------------------------------------- time
    def cpu_ns(self, v: VCpu) -> int:
        """Cumulative CPU time of a vCPU, including its current run."""
        if v.on_cpu is not None and self.engine.now > v.run_start:
            return v.cpu_ns + self.engine.now - v.run_start
        return v.cpu_ns

    def idle_ns(self, pc: PCpu) -> int:
        if pc.current is None:
            return pc.idle_ns + self.engine.now - pc.idle_start
        return pc.idle_ns

    def _account_stop(self, v: VCpu, now: int) -> None:
        if now > v.run_start:
            v.cpu_ns += now - v.run_start

    # ----------------------------------------------------------------------------- wake-up
    def wake(self, v: VCpu) -> None:
        """An event for ``v`` (packets in its ring, a timer): make it runnable if blocked."""
        if v.woken:
            return
        v.woken = True
        if v.on_cpu is not None or v.queued or v.parked or not v.dom.alive:
            return
        if v.pri == PRI_UNDER:
            v.pri = PRI_BOOST
        if v.processor not in v.affinity:
            v.processor = min(v.affinity)
        self._enqueue(self.pcpus[v.processor], v)
        self._tickle(v)

    def _tickle(self, v: VCpu) -> None:
        pc = self.pcpus[v.processor]
        cur = pc.current
        cur_pri = cur.pri if cur is not None else PRI_IDLE
        if v.pri > cur_pri:
            self._mark(pc)
        if cur is not None:
            for other in self.pcpus:
                if other.current is None and other.cpu in v.affinity and other is not pc:
                    self._mark(other)

    def _mark(self, pc: PCpu) -> None:
        if not pc.need_resched:
            pc.need_resched = True
            self._resched.append(pc)

    def flush(self) -> None:
        """Run the schedule function on every pCPU marked for rescheduling."""
        pending = self._resched
        while pending:
            pc = pending.pop(0)
            if pc.need_resched:
                pc.need_resched = False
                self._schedule(pc)

    # ----------------------------------------------------------------------------- queues
    def _enqueue(self, pc: PCpu, v: VCpu) -> None:
        runq = pc.runq
        i = len(runq)
        while i > 0 and runq[i - 1].pri < v.pri:
            i -= 1
        runq.insert(i, v)
        v.queued = True
        v.processor = pc.cpu

    def _dequeue(self, v: VCpu) -> None:
        self.pcpus[v.processor].runq.remove(v)
        v.queued = False

    def _steal(self, pc: PCpu, better_than: int) -> VCpu | None:
        n = len(self.pcpus)
        for k in range(1, n):
            peer = self.pcpus[(pc.cpu + k) % n]
            if peer.current is None and not peer.need_resched:
                continue  # an idle peer is about to run its own queue
            for v in peer.runq:
                if v.pri <= better_than:
                    break
                if pc.cpu in v.affinity:
                    peer.runq.remove(v)
                    v.queued = False
                    return v
        return None

    # ----------------------------------------------------------------------------- schedule
    def _schedule(self, pc: PCpu) -> None:
        now = self.engine.now
        cur = pc.current
        if cur is not None:
            self._account_stop(cur, now)
            if cur.unit is not None:
                elapsed = now - pc.unit_start
                if elapsed > 0:
                    cur.unit.remaining_ns = max(0, cur.unit.remaining_ns - elapsed)
            cur.on_cpu = None
            pc.current = None
            pc.gen += 1
            if (cur.unit is not None or cur.woken) and not cur.parked:
                if pc.cpu in cur.affinity:
                    self._enqueue(pc, cur)
                else:
                    # Affinity changed under it: move it to a pCPU it may run on.
                    self._enqueue(self.pcpus[min(cur.affinity)], cur)
                    self._tickle(cur)
        nxt = pc.runq[0] if pc.runq else None
        if nxt is not None and nxt.pri > PRI_OVER:
            pc.runq.pop(0)
            nxt.queued = False
        else:
            stolen = self._steal(pc, nxt.pri if nxt is not None else PRI_IDLE)
            if stolen is not None:
                nxt = stolen
            elif nxt is not None:
                pc.runq.pop(0)
                nxt.queued = False
        if nxt is None:
            if cur is not None:
                pc.idle_start = now
            return
        if cur is None:
            pc.idle_ns += now - pc.idle_start
        self._dispatch(pc, nxt, now)

    def _dispatch(self, pc: PCpu, v: VCpu, now: int) -> None:
        pc.current = v
        v.on_cpu = pc
        v.processor = pc.cpu
        switch = refill = 0
        if pc.last_vcpu is not None and pc.last_vcpu.dom is not v.dom:
            switch = self.context_switch_ns
            refill = self.cache_refill_ns
            self.context_switches += 1
        pc.last_vcpu = v
        v.run_start = now + switch  # the switch itself is hypervisor time
        pc.slice_end = now + TSLICE_NS
        self._start_unit(pc, v, now, switch + refill)

    def _start_unit(self, pc: PCpu, v: VCpu, now: int, overhead: int) -> None:
        if v.unit is None:
            v.woken = False
            v.unit = v.guest.plan(v, now)
            if v.unit is None:
                # Nothing to do: the vCPU blocks. Its switch-in cost was still spent.
                self._block(pc, v, now + overhead)
                return
        pc.gen += 1
        start = pc.unit_start = now + overhead
        end = start + v.unit.remaining_ns
        self.engine.at(end if end < pc.slice_end else pc.slice_end, self._unit_event, pc, pc.gen)

    def _block(self, pc: PCpu, v: VCpu, at: int) -> None:
        if at > self.engine.now:
            # Spend the switch cost, then reschedule.
            pc.gen += 1
            pc.unit_start = at
            self.engine.at(at, self._block_event, pc, pc.gen)
            return
        self._account_stop(v, self.engine.now)
        v.on_cpu = None
        pc.current = None
        pc.gen += 1
        pc.idle_start = self.engine.now
        self._schedule(pc)

    def _block_event(self, pc: PCpu, gen: int) -> None:
        if gen != pc.gen or pc.current is None:
            return
        v = pc.current
        if v.woken:
            self._start_unit(pc, v, self.engine.now, 0)
        else:
            self._block(pc, v, self.engine.now)

    def _unit_event(self, pc: PCpu, gen: int) -> None:
        if gen != pc.gen or pc.current is None:
            return
        now = self.engine.now
        v = pc.current
        unit = v.unit
        assert unit is not None
        done = now - pc.unit_start
        if done < unit.remaining_ns:
            # Time slice expired mid-unit.
            unit.remaining_ns -= done
            pc.unit_start = now
            self._mark(pc)
            return
        v.unit = None
        unit.commit(now)
        if pc.need_resched or now >= pc.slice_end:
            v.woken = True  # it did not block: re-plan when it runs again
            self._mark(pc)
            return
        self._start_unit(pc, v, now, 0)

    # ----------------------------------------------------------------------------- credit
    def _tick(self, pc: PCpu) -> None:
        now = self.engine.now
        self.engine.at(now + TICK_NS, self._tick, pc)
        v = pc.current
        if v is not None:
            v.credit -= CREDITS_PER_TICK
            if v.pri == PRI_BOOST:
                v.pri = PRI_UNDER
            if not v.active:
                v.active = True
                v.dom.active = True
        if pc.cpu == 0:
            self._tick_count += 1
            if self._tick_count % TICKS_PER_ACCT == 0:
                self._account()

    def _account(self) -> None:
        """Hand out one period's credits by weight to active domains (Xen's csched_acct)."""
        ncpus = len(self.pcpus)
        budget = CREDITS_PER_ACCT * ncpus
        active = [d for d in self.domains if d.active]
        fair: dict[int, float] = {}
        # Water-filling: a domain gets at most what its vCPUs (or its cap) can use; what it
        # cannot use is shared out again among the others by weight.
        remaining = list(active)
        left = float(budget)
        while remaining:
            wsum = sum(d.weight for d in remaining)
            clipped = False
            for d in list(remaining):
                share = left * d.weight / wsum
                nact = sum(1 for v in d.vcpus if v.active) or 1
                peak = float(CREDITS_PER_ACCT * nact)
                if d.cap:
                    peak = min(peak, d.cap * CREDITS_PER_ACCT / 100.0)
                if share > peak:
                    fair[d.domid] = peak
                    left -= peak
                    remaining.remove(d)
                    clipped = True
            if not clipped:
                for d in remaining:
                    fair[d.domid] = left * d.weight / wsum
                break
        for d in active:
            vs = [v for v in d.vcpus if v.active]
            if not vs:
                d.active = False
                continue
            per_vcpu = int(fair.get(d.domid, 0.0) / len(vs) + 0.999)
            # A capped vCPU owing more than its share of one period's capped credit is parked.
            cap_per_vcpu = -1
            if d.cap:
                cap_credits = (d.cap * CREDITS_PER_ACCT + 99) // 100
                cap_per_vcpu = (cap_credits + len(vs) - 1) // len(vs)
            for v in vs:
                v.credit += per_vcpu
                if v.credit < 0:
                    v.pri = PRI_OVER
                    if cap_per_vcpu >= 0 and v.credit < -cap_per_vcpu:
                        self._park(v)
                    v.credit = max(v.credit, -CREDITS_PER_TSLICE)
                else:
                    v.pri = PRI_UNDER
                    if v.parked:
                        self._unpark(v)
                    if v.credit > CREDITS_PER_TSLICE:
                        v.active = False
                        v.credit = 0
            if not any(v.active for v in d.vcpus):
                d.active = False
        for pc in self.pcpus:
            self._resort(pc)
        self.flush()

    def _resort(self, pc: PCpu) -> None:
        pc.runq.sort(key=lambda v: -v.pri)  # stable: FIFO inside a priority
        cur = pc.current
        if cur is not None and pc.runq and pc.runq[0].pri > cur.pri:
            self._mark(pc)

    def _park(self, v: VCpu) -> None:
        """A capped vCPU out of credit is paused until the next accounting gives it some."""
        v.parked = True
        if v.queued:
            self._dequeue(v)
        if v.on_cpu is not None:
            self._mark(v.on_cpu)

    def _unpark(self, v: VCpu) -> None:
        v.parked = False
        if (v.woken or v.unit is not None) and v.on_cpu is None and not v.queued:
            self._enqueue(self.pcpus[v.processor], v)
            self._tickle(v)
