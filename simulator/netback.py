"""dom0's side of the split network driver: NIC receive, the bridge and netback, run by
dom0's event upcalls and softirqs as in the Linux 2.6.16/2.6.18-xen kernels of Xen 3.0/3.1.

Work reaches dom0 as event-channel ports: the NICs' interrupts first (bound at boot), then
one port per vif in the order the domUs were created.

- **Upcall.** dom0, entered with ports pending, handles the lowest pending port; `irq_exit`
  after that handler runs the softirqs. When they are done it handles the next lowest
  pending port, and so on: while dom0 is short of time, the ports created last wait longest.
- **Softirq run.** One pass is NET_RX (NAPI polls of every interrupting NIC, `netdev_budget`
  packets in all) then netback's tx tasklet (`net_tx_action`: one turn of requests shared
  round-robin over the vifs on `net_schedule_list`). `__do_softirq` repeats passes while
  work remains, at most `MAX_SOFTIRQ_RESTART` times, then leaves it to ksoftirqd, during
  which an upcall handles every pending port at once (`do_IRQ` cannot run softirqs then).
- **Nested upcalls** (`nested_events`, Linux 2.6.16-xen of Xen 3.0.4): softirqs run with
  events unmasked, so an event arriving during a softirq run enters a nested upcall that
  handles every pending port before the run continues. Xen changeset 3d17485a07 "[LINUX]
  Disallow nested event delivery", in 3.1.0 and not 3.0.4, makes nested upcalls bail.
- **net_schedule_list.** Handling a vif's port puts it on the list's tail if it has tx
  requests; a vif with requests left after its turn goes back on the tail; one whose ring
  is empty drops off and needs a new event (netfront notifies only then, via `req_event`).
- **Receive flow control.** netback stops a vif's queue when fewer than
  `RX_SLOTS_NEEDED` posted buffers remain; packets then wait in the vif's qdisc or drop.
  Only handling the vif's port (the domU posted buffers) wakes the queue.

Notifications are sent at the end of a batch, last queued first (`notify_list[--notify_nr]`).
A domU that is UNDER wakes BOOSTed and, on dom0's pCPU, preempts an OVER dom0.
See docs/forwarding-model.md for how these rules were chosen.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.credit import Unit, VCpu, no_effect
from simulator.engine import NS_PER_US, Engine
from simulator.network import FRAME_OVERHEAD_BYTES, Nic, Vif, wire_bytes
from simulator.tcp import ACK, DATA, Chunk

#: CPU cost in dom0 per packet from a NIC to a domU: driver receive, bridge lookup, netback's
#: grant copy of the payload into the domU's page. Chosen (with the costs below) so that
#: receive on one domU at 900 Mb/s costs dom0 about 0.9 of a 2 GHz Opteron, as measured.
DOM0_RX_DATA_NS = 9_500
#: Same for a bare ACK (no payload to copy).
DOM0_RX_ACK_NS = 2_400
#: CPU cost in dom0 per packet from a domU to a NIC: netback's grant map/copy, bridge,
#: driver transmit. Chosen so that send on one domU at 914 Mb/s costs dom0 about 0.6 CPU.
DOM0_TX_DATA_NS = 5_600
DOM0_TX_ACK_NS = 2_200
#: The gathering part of each tx request's cost above (ring read, skb allocation, its map
#: operation in the turn's one grant-table hypercall): about 1 us each on a 2 GHz K8. The
#: rest (bridge, driver transmit) is per packet as it is handed on, so the first packet of
#: a turn reaches the NIC after the gathering plus its own rest, not after the whole turn.
TX_GATHER_NS = 2 * NS_PER_US
#: Fixed cost per batch: softirq/tasklet entry, the grant-table hypercall.
DOM0_BATCH_NS = 4 * NS_PER_US
#: Cost of one event-channel notification (the evtchn_send hypercall).
DOM0_NOTIFY_NS = 1 * NS_PER_US
#: dom0's cost of a NIC's interrupt handler (acknowledge, schedule the NAPI poll).
NIC_IRQ_NS = 2 * NS_PER_US
#: dom0's cost of handling a vif's port (netif_be_int: schedule list, queue wake-up).
VIF_EVENT_NS = DOM0_BATCH_NS
#: Packets per NAPI poll (the poll weight) and requests per tx tasklet turn.
BATCH_PACKETS = 64
#: Packets one NET_RX softirq may poll in all (net.core.netdev_budget).
NETDEV_BUDGET = 300
#: Passes __do_softirq makes before leaving the work to ksoftirqd (kernel/softirq.c).
MAX_SOFTIRQ_RESTART = 10
#: Free posted buffers netback needs to keep a vif's queue running: one packet's worst case
#: with scatter-gather (MAX_SKB_FRAGS + 2 = 20 with 4 KiB pages, netbk_queue_full).
RX_SLOTS_NEEDED = 20


class Dom0Netback:
    """The dom0 guest: event upcalls, NAPI polls and netback's tx tasklet."""

    def __init__(
        self,
        engine: Engine,
        nics: list[Nic],
        remote_receive: Callable[[Chunk], None],
        on_drop: Callable[[Chunk], None],
        *,
        nested_events: bool = False,
    ) -> None:
        self.engine = engine
        self.nics = nics
        self.vifs: list[Vif] = []  # port order = creation order
        self.remote_receive = remote_receive
        self.on_drop = on_drop
        self.nested_events = nested_events
        self.wake_self: Callable[[], None] = lambda: None  # set when dom0's vCPU exists
        self.batches = 0
        self._schedule: list[Vif] = []  # net_schedule_list
        # The softirq pass: NIC polls (those left from _poll_at), then tx turns.
        self._polls: list[Nic] = []
        self._poll_at = 0
        self._turns_left = 0
        self._turn = BATCH_PACKETS  # requests per vif in this pass's tx turns
        self._in_softirq = False
        self._ksoftirqd = False
        self._restarts = 0
        self._nested = False  # a nested upcall is pending
        self._rest: Unit | None = None  # the rest of a tx batch after its first packet
        self._deferred: list[Vif] = []  # notifications a preemption interrupted
        # True when dom0's pCPU is about to switch to a vCPU dom0 just woke.
        self.preempt_pending: Callable[[], bool] = lambda: False

    # -------------------------------------------------------------------- events into dom0
    def attach_vif(self, vif: Vif) -> None:
        vif.attached = True
        self.vifs.append(vif)

    def detach_vif(self, vif: Vif) -> None:
        vif.attached = False
        self.vifs.remove(vif)
        if vif.scheduled:
            self._schedule.remove(vif)
            vif.scheduled = False

    def tx_queued(self, vif: Vif) -> None:
        """netfront put requests on the tx ring: it notifies dom0 only when netback is not
        already working through the ring (the vif is off net_schedule_list)."""
        if vif.scheduled or vif.tx_event:
            return
        vif.tx_event = True
        self._port_raised(not vif.rx_event)

    def rx_refilled(self, vif: Vif) -> None:
        """netfront refilled its receive buffers: it notifies dom0 when netback stopped the
        vif's queue and there are now enough for a packet (req_event set on stopping)."""
        if not vif.stopped or vif.posted < RX_SLOTS_NEEDED or vif.rx_event:
            return
        vif.rx_event = True
        self._port_raised(not vif.tx_event)

    def arm_irq(self, nic: Nic) -> None:
        """NAPI completed: the NIC will interrupt again once coalescing allows."""
        nic.irq_armed = True
        self.schedule_irq(nic)

    def schedule_irq(self, nic: Nic) -> None:
        """Called when packets are put on the wire: make sure an interrupt will follow."""
        if nic.irq_armed:
            at = nic.irq_due_ns(self.engine.now)
            if at is not None:
                nic.irq_armed = False
                self.engine.at(at, self._irq, nic)

    def _irq(self, nic: Nic) -> None:
        nic.irq_pending = True
        self._port_raised(not nic.port_pending)
        nic.port_pending = True

    def _port_raised(self, newly_pending: bool) -> None:
        """A port became pending: wake dom0; with nested delivery, a port going from idle to
        pending while dom0 is in a softirq run interrupts it with a nested upcall."""
        if newly_pending and self.nested_events:
            self._nested = True
        self.wake_self()

    # -------------------------------------------------------------------- guest
    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        """The next unit of dom0's work. A handler with no effect of its own (a NIC's
        interrupt, a vif's port with only tx requests) is a few microseconds: it is charged
        to the unit that follows instead of being scheduled alone, which saves a third of
        dom0's units and moves nothing by more than those microseconds."""
        charged = 0
        unit = self._next_unit(now)
        while unit is not None and unit.commit is no_effect:
            charged += unit.remaining_ns
            unit = self._next_unit(now)
        if not charged:
            return unit
        if unit is None:
            return Unit(charged, no_effect)
        unit.remaining_ns += charged
        return unit

    def _next_unit(self, now: int) -> Unit | None:
        if self._rest is not None:
            rest, self._rest = self._rest, None
            return rest
        if not self._in_softirq:
            self._nested = False  # the outer upcall handles the pending ports itself
        if self._deferred:
            # Finish the interrupted batch's notifications before anything else.
            pending, self._deferred = self._deferred, []
            return Unit(DOM0_NOTIFY_NS * len(pending), lambda _t: self._notify_all(pending))
        if self._nested:
            if not self._ksoftirqd:
                unit = self._handle_port()
                if unit is not None:
                    return unit
            self._nested = False
        unit = self._softirqs(now)
        if unit is None:
            self._nested = False
        return unit

    def _softirqs(self, now: int) -> Unit | None:
        if self._ksoftirqd or not self._in_softirq:
            unit = self._handle_port()
            if unit is not None:
                if not self._ksoftirqd and not self._in_softirq:
                    self._start_run()  # irq_exit after this handler
                return unit
        for _ in range(2):
            unit = self._next_item(now)
            if unit is not None:
                return unit
            # A pass ended.
            if not self._has_work():
                self._in_softirq = False
                self._ksoftirqd = False
                unit = self._handle_port()
                if unit is not None:
                    self._start_run()
                return unit
            if not self._in_softirq:
                self._ksoftirqd = True  # work raised outside a softirq run
            elif not self._ksoftirqd:
                self._restarts += 1
                if self._restarts >= MAX_SOFTIRQ_RESTART:
                    self._ksoftirqd = True
            self._build_pass()
        return None

    def _start_run(self) -> None:
        self._in_softirq = True
        self._restarts = 0
        self._build_pass()

    def _has_work(self) -> bool:
        return bool(self._schedule) or any(nic.irq_pending for nic in self.nics)

    def _build_pass(self) -> None:
        polling = [nic for nic in self.nics if nic.irq_pending]
        rounds = max(1, NETDEV_BUDGET // (BATCH_PACKETS * len(polling))) if polling else 0
        self._polls = polling * rounds
        self._poll_at = 0
        turns = self._turns_left = len(self._schedule)
        self._turn = max(1, BATCH_PACKETS // turns) if turns else BATCH_PACKETS

    def _next_item(self, now: int) -> Unit | None:
        """The pass's next NIC poll (one still interrupting), then its tx turns."""
        polls = self._polls
        while self._poll_at < len(polls):
            nic = polls[self._poll_at]
            self._poll_at += 1
            if nic.irq_pending:
                return self._nic_batch(nic, now)
        while self._turns_left:
            self._turns_left -= 1
            unit = self._tx_turn()
            if unit is not None:
                return unit
        return None

    def _handle_port(self) -> Unit | None:
        """The lowest pending port's handler: a NIC's interrupt, or a vif's netif_be_int."""
        for nic in self.nics:
            if nic.port_pending:
                nic.port_pending = False
                return Unit(NIC_IRQ_NS, no_effect)
        for vif in self.vifs:
            if vif.rx_event or vif.tx_event:
                return self._vif_event(vif)
        return None

    def _vif_event(self, vif: Vif) -> Unit:
        if vif.tx_event:
            vif.tx_event = False
            if not vif.scheduled:
                vif.scheduled = True
                self._schedule.append(vif)
        if not vif.rx_event:
            return Unit(VIF_EVENT_NS, no_effect)
        vif.rx_event = False
        return Unit(VIF_EVENT_NS + DOM0_NOTIFY_NS, lambda _t: self._wake_queue(vif))

    def _wake_queue(self, vif: Vif) -> None:
        """The domU posted buffers: restart the vif's queue and feed it from the qdisc."""
        if not vif.stopped or vif.posted < RX_SLOTS_NEEDED:
            return
        vif.stopped = False
        queued = vif.qdisc.take(vif.qdisc.n)
        moved = 0
        for chunk in queued:
            if vif.stopped:
                vif.qdisc.push(chunk)  # stopped again: the rest stays queued, in order
            else:
                moved += self._deliver(vif, chunk)
        if moved:
            self._notify_all([vif])

    # -------------------------------------------------------------------- receive: NIC to vif
    def _nic_batch(self, nic: Nic, now: int) -> Unit:
        nic.materialize(now, self.on_drop)
        chunks = nic.rx.take(BATCH_PACKETS)
        took = sum(c[2] for c in chunks)
        cost = DOM0_BATCH_NS + DOM0_NOTIFY_NS * len(chunks)
        for _, kind, count, _, _ in chunks:
            cost += count * (DOM0_RX_ACK_NS if kind == ACK else DOM0_RX_DATA_NS)

        def commit(_t: int) -> None:
            self.batches += 1
            woken: list[Vif] = []
            for chunk in chunks:
                vif: Vif | None = chunk[0].vif
                if vif is None or not vif.attached:
                    self.on_drop(chunk)
                elif self._deliver(vif, chunk) and vif not in woken:
                    woken.append(vif)
            if took < BATCH_PACKETS:
                # NAPI completes on a short poll and re-enables the (coalesced) interrupt.
                nic.irq_pending = False
                self.arm_irq(nic)
            woken.reverse()  # net_rx_action notifies from the end of its list
            self._notify_all(woken)

        return Unit(cost, commit)

    def _deliver(self, vif: Vif, chunk: Chunk) -> int:
        """The vif's start_xmit for one chunk's packets: into posted buffers while the queue
        runs, then into the qdisc, then dropped. Returns the packets put on the rx ring."""
        flow, kind, count, acked, sent = chunk
        took = 0 if vif.stopped else min(count, max(0, vif.posted - RX_SLOTS_NEEDED + 1))
        took_acked = acked * took // count
        if took:
            vif.rx.push((flow, kind, took, took_acked, sent))
            vif.posted -= took
            c = vif.counters
            c.rx_packets += took
            c.rx_bytes += took * (wire_bytes(kind) - FRAME_OVERHEAD_BYTES)
            if vif.posted < RX_SLOTS_NEEDED:
                vif.stopped = True
        rest, rest_acked = count - took, acked - took_acked
        if rest:
            queued = min(rest, vif.qdisc.space())
            if queued:
                queued_acked = rest_acked * queued // rest
                vif.qdisc.push((flow, kind, queued, queued_acked, sent))
                rest -= queued
                rest_acked -= queued_acked
            if rest:
                vif.counters.rx_drops += rest
                self.on_drop((flow, kind, rest, rest_acked, sent))
        return took

    def _notify_all(self, vifs: list[Vif]) -> None:
        """Notify domUs in the order given. A notified UNDER domU on dom0's pCPU preempts
        dom0 at once (the hypercall returns into the scheduler): the rest wait until dom0
        runs again."""
        for i, vif in enumerate(vifs):
            vif.wake_domu()
            if self.preempt_pending() and i + 1 < len(vifs):
                self._deferred = vifs[i + 1 :]
                return

    # -------------------------------------------------------------------- transmit: vif to NIC
    def _tx_turn(self) -> Unit | None:
        """One vif's turn of net_tx_action, from the head of net_schedule_list."""
        schedule = self._schedule
        while schedule:
            vif = schedule.pop(0)
            if not vif.tx.n:
                vif.scheduled = False
                continue
            unit = self._vif_batch(vif, self._turn)
            if vif.tx.n:
                schedule.append(vif)
            else:
                vif.scheduled = False  # RING_FINAL_CHECK_FOR_REQUESTS arms req_event
            return unit
        return None

    def _vif_batch(self, vif: Vif, limit: int) -> Unit:
        chunks = vif.tx.take(limit)
        packets = sum(c[2] for c in chunks)
        total = DOM0_BATCH_NS
        c = vif.counters
        for _, kind, count, _, _ in chunks:
            total += count * (DOM0_TX_ACK_NS if kind == ACK else DOM0_TX_DATA_NS)
            c.tx_packets += count
            c.tx_bytes += count * (wire_bytes(kind) - FRAME_OVERHEAD_BYTES)
        first_cost = DOM0_TX_ACK_NS if chunks and chunks[0][1] == ACK else DOM0_TX_DATA_NS
        first = min(total, DOM0_BATCH_NS + packets * TX_GATHER_NS + first_cost - TX_GATHER_NS)

        def done(_t: int) -> None:
            if vif.wake_on_tx_done:
                vif.wake_domu()

        def commit(t: int) -> None:
            # The first packet is handed on: the NIC serialises the turn at line rate, slower
            # than dom0 hands on the rest, so the whole turn can be queued on it now.
            self.batches += 1
            for chunk in chunks:
                flow = chunk[0]
                nic: Nic | None = flow.dst_nic if chunk[1] == DATA else flow.src_nic
                arrive = nic.transmit(chunk, t) if nic is not None else None
                if arrive is None:
                    self.on_drop(chunk)
                else:
                    self.engine.at(arrive, self.remote_receive, chunk)
            if total > first:
                self._rest = Unit(total - first, done)
            else:
                done(t)

        return Unit(first, commit)
