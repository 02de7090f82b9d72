"""dom0's side of the split network driver: the NICs' receive path, the bridge and netback.

dom0 does the packet work of every domU. Its work arrives as event-channel ports: the NICs'
interrupts first (bound at boot), then one port per vif in the order the domUs were created.
Each time dom0 is entered through an upcall it serves pending ports *from the lowest port
up*, one batch per port: a NIC poll moves packets from the wire to the destination domU's rx
ring and notifies that domU; a vif batch takes packets the domU queued on its tx ring and
puts them on a NIC. A port that becomes pending again while dom0 is busy with a higher one
is served before the higher ones continue (the upcall re-reads the pending bits), so when
dom0 is short of time the domains created last wait longest.

Notifications are sent at the end of a batch. A domU that is UNDER wakes BOOSTed and, on
dom0's pCPU, preempts an OVER dom0 in the middle of its next batch.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.credit import Unit, VCpu
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
#: Fixed cost per batch: softirq/tasklet entry, the grant-table hypercall, the notification.
DOM0_BATCH_NS = 4 * NS_PER_US
#: Cost of one event-channel notification (the evtchn_send hypercall).
DOM0_NOTIFY_NS = 1 * NS_PER_US
#: Packets per batch: NAPI's poll weight, also netback's per-round limit used here.
BATCH_PACKETS = 64


class Dom0Netback:
    """The dom0 guest: serves NIC and vif ports in port order, one batch per pending port."""

    def __init__(
        self,
        engine: Engine,
        nics: list[Nic],
        remote_receive: Callable[[Chunk], None],
        on_drop: Callable[[Chunk], None],
    ) -> None:
        self.engine = engine
        self.nics = nics
        self.vifs: list[Vif] = []  # port order = creation order
        self.remote_receive = remote_receive
        self.on_drop = on_drop
        self.wake_self: Callable[[], None] = lambda: None  # set when dom0's vCPU exists
        self.batches = 0
        self._pos = 0  # next port of the current sweep
        self._run_start = -1
        self._deferred: list[Vif] = []  # notifications a preemption interrupted
        self._upcall = False
        # True when dom0's pCPU is about to switch to a vCPU dom0 just woke.
        self.preempt_pending: Callable[[], bool] = lambda: False

    # -------------------------------------------------------------------- events into dom0
    def attach_vif(self, vif: Vif) -> None:
        vif.attached = True
        self.vifs.append(vif)

    def detach_vif(self, vif: Vif) -> None:
        vif.attached = False
        self.vifs.remove(vif)

    def notify(self) -> None:
        """An event on one of dom0's ports: the upcall will rescan from the lowest port."""
        self._upcall = True
        self.wake_self()

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
        self.notify()

    # -------------------------------------------------------------------- guest
    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        if self._deferred:
            # Finish the interrupted batch's notifications before anything else.
            pending, self._deferred = self._deferred, []
            return Unit(DOM0_NOTIFY_NS * len(pending), lambda _t: self._notify_all(pending))
        if vcpu.run_start != self._run_start or self._upcall:
            # An event arrived, or dom0 was descheduled, since its last batch: the upcall
            # scans the pending ports from the lowest again.
            self._run_start = vcpu.run_start
            self._upcall = False
            self._pos = 0
        nics = self.nics
        vifs = self.vifs
        nports = len(nics) + len(vifs)
        for sweep in range(2):
            start = self._pos if sweep == 0 else 0
            for port in range(start, nports):
                if port < len(nics):
                    nic = nics[port]
                    if nic.irq_pending:
                        self._pos = port + 1
                        return self._nic_batch(nic, now)
                elif vifs[port - len(nics)].tx.n:
                    self._pos = port + 1
                    return self._vif_batch(vifs[port - len(nics)])
            if start == 0:
                break
        self._pos = 0
        return None

    def _nic_batch(self, nic: Nic, now: int) -> Unit:
        nic.materialize(now, self.on_drop)
        chunks = nic.rx.take(BATCH_PACKETS)
        took = sum(c[2] for c in chunks)
        cost = DOM0_BATCH_NS
        for _, kind, count, _, _ in chunks:
            cost += count * (DOM0_RX_ACK_NS if kind == ACK else DOM0_RX_DATA_NS)

        def commit(_t: int) -> None:
            self.batches += 1
            woken: list[Vif] = []
            for flow, kind, count, acked, sent in chunks:
                vif: Vif = flow.vif
                if vif is None or not vif.attached:
                    self.on_drop((flow, kind, count, acked, sent))
                    continue
                room = vif.rx.space()
                c = vif.counters
                kept, kept_acked = count, acked
                if room < count:
                    # The domU has not posted enough buffers: netback's queue overflows.
                    dropped = count - room
                    c.rx_drops += dropped
                    part = acked * dropped // count
                    self.on_drop((flow, kind, dropped, part, sent))
                    if room == 0:
                        continue
                    kept, kept_acked = room, acked - part
                vif.rx.push((flow, kind, kept, kept_acked, sent))
                c.rx_packets += kept
                c.rx_bytes += kept * (wire_bytes(kind) - FRAME_OVERHEAD_BYTES)
                if vif not in woken:
                    woken.append(vif)
            if took < BATCH_PACKETS:
                # NAPI completes on a short poll and re-enables the (coalesced) interrupt.
                nic.irq_pending = False
                self.arm_irq(nic)
            woken.sort(key=lambda v: v.port)
            self._notify_all(woken)

        return Unit(cost + DOM0_NOTIFY_NS * len(chunks), commit)

    def _notify_all(self, vifs: list[Vif]) -> None:
        """Notify domUs in port order. A notified UNDER domU on dom0's pCPU preempts dom0
        at once (the hypercall returns into the scheduler): the rest wait until dom0 runs."""
        for i, vif in enumerate(vifs):
            vif.wake_domu()
            if self.preempt_pending() and i + 1 < len(vifs):
                self._deferred = vifs[i + 1 :]
                return

    def _vif_batch(self, vif: Vif) -> Unit:
        chunks = vif.tx.take(BATCH_PACKETS)
        cost = DOM0_BATCH_NS
        for _, kind, count, _, _ in chunks:
            cost += count * (DOM0_TX_ACK_NS if kind == ACK else DOM0_TX_DATA_NS)
        c = vif.counters
        for _, kind, count, _, _ in chunks:
            c.tx_packets += count
            c.tx_bytes += count * (wire_bytes(kind) - FRAME_OVERHEAD_BYTES)

        def commit(t: int) -> None:
            self.batches += 1
            for chunk in chunks:
                flow = chunk[0]
                nic: Nic | None = flow.dst_nic if chunk[1] == DATA else flow.src_nic
                if nic is None:
                    self.on_drop(chunk)
                    continue
                arrive = nic.transmit(chunk, t)
                if arrive is None:
                    self.on_drop(chunk)
                else:
                    self.engine.at(arrive, self.remote_receive, chunk)
            # Transmit completions: the domU may have been waiting for ring space.
            vif.wake_domu()

        return Unit(cost, commit)
