"""dom0's netback rules on their own: dom0's vCPU reduced to running netback's units back to
back, rings filled by hand, so each rule shows exactly."""

from __future__ import annotations

from simulator.credit import Domain, VCpu
from simulator.engine import Engine
from simulator.netback import BATCH_PACKETS, RX_SLOTS_NEEDED, Dom0Netback
from simulator.network import NETFRONT_RX_TARGET, VIF_QUEUE_PACKETS, Nic, Vif
from simulator.tcp import DATA, Flow


class Dom0:
    """A dom0 that always has a pCPU: each step runs netback's next unit to completion."""

    def __init__(self, *, nested_events: bool = False) -> None:
        self.engine = Engine()
        self.nics = [Nic(0, 1e9), Nic(1, 1e9)]
        self.delivered: list[tuple[int, int]] = []  # (time, flow id) at the remote end
        self.netback = Dom0Netback(
            self.engine,
            self.nics,
            lambda chunk: self.delivered.append((self.engine.now, chunk[0].fid)),
            lambda _chunk: None,
            nested_events=nested_events,
        )
        self.vcpu = VCpu(Domain(0, 256, 0), 0, self.netback, 0, 1)
        self.woken: list[int] = []

    def vif(self, domid: int) -> Vif:
        vif = Vif(domid, 0, len(self.nics) + domid, lambda: self.woken.append(domid))
        self.netback.attach_vif(vif)
        return vif

    def step(self) -> bool:
        """Run one unit; False when dom0 would block."""
        unit = self.netback.plan(self.vcpu, self.engine.now)
        if unit is None:
            return False
        self.engine.run_until(self.engine.now + unit.remaining_ns)
        unit.commit(self.engine.now)
        return True

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("dom0 never blocked")


def flow_to(vif: Vif, fid: int, nics: list[Nic]) -> Flow:
    flow = Flow(fid)
    flow.vif = vif
    flow.src_nic, flow.dst_nic = nics[0], nics[1]
    return flow


def queue_tx(dom0: Dom0, vif: Vif, flow: Flow, packets: int) -> None:
    """The domU puts ``packets`` forwarded segments on its tx ring."""
    vif.tx.push((flow, DATA, packets, 0, 0))
    dom0.netback.tx_queued(vif)


def test_rx_queue_stops_when_posted_buffers_run_low_and_waits_for_the_domu() -> None:
    dom0 = Dom0()
    vif = dom0.vif(1)
    flow = flow_to(vif, 1, dom0.nics)
    accepted = NETFRONT_RX_TARGET - RX_SLOTS_NEEDED + 1
    arriving = accepted + VIF_QUEUE_PACKETS + 10
    nic = dom0.nics[0]
    nic.rx.push((flow, DATA, arriving, 0, 0))
    dom0.netback._irq(nic)
    dom0.run()
    assert vif.stopped
    assert vif.rx.n == accepted  # into the buffers the domU posted
    assert vif.qdisc.n == VIF_QUEUE_PACKETS  # then the vif's qdisc
    assert vif.counters.rx_drops == 10  # then dropped
    assert dom0.woken == [1]

    # The domU takes its packets and posts buffers again: the queue restarts only when
    # dom0 handles the vif's port, and the qdisc drains into the new buffers.
    vif.rx.take(vif.rx.n)
    vif.posted = NETFRONT_RX_TARGET
    assert vif.stopped
    assert vif.qdisc.n == VIF_QUEUE_PACKETS
    dom0.netback.rx_refilled(vif)
    dom0.run()
    assert not vif.stopped
    assert vif.rx.n == VIF_QUEUE_PACKETS
    assert vif.qdisc.n == 0
    assert dom0.woken == [1, 1]


def test_a_domu_that_posts_buffers_to_a_running_queue_does_not_notify() -> None:
    dom0 = Dom0()
    vif = dom0.vif(1)
    dom0.netback.rx_refilled(vif)
    assert not vif.rx_event
    assert not dom0.step()


def test_vifs_on_the_schedule_list_share_each_tx_turn_round_robin() -> None:
    dom0 = Dom0()
    a, b = dom0.vif(1), dom0.vif(2)
    queue_tx(dom0, a, flow_to(a, 1, dom0.nics), 1200)
    queue_tx(dom0, b, flow_to(b, 2, dom0.nics), 1200)
    sent: list[tuple[int, int]] = []
    while a.tx.n or b.tx.n:
        before = (a.counters.tx_packets, b.counters.tx_packets)
        assert dom0.step()
        sent.append((a.counters.tx_packets - before[0], b.counters.tx_packets - before[1]))
    turns = [t for t in sent if t != (0, 0)]
    # Once both are on the list, each pass gives each vif half a turn, alternately.
    both = turns[turns.index((0, BATCH_PACKETS // 2)) - 1 :][:6]
    assert both == [(BATCH_PACKETS // 2, 0), (0, BATCH_PACKETS // 2)] * 3


def test_a_vif_with_requests_left_stays_scheduled_one_whose_ring_empties_needs_an_event() -> None:
    dom0 = Dom0()
    vif = dom0.vif(1)
    flow = flow_to(vif, 1, dom0.nics)
    queue_tx(dom0, vif, flow, 3 * BATCH_PACKETS)
    dom0.run()
    assert vif.counters.tx_packets == 3 * BATCH_PACKETS  # one event, three turns
    assert not vif.scheduled

    vif.tx.push((flow, DATA, 10, 0, 0))  # without notifying dom0
    assert not dom0.step()
    dom0.netback.tx_queued(vif)
    dom0.run()
    assert vif.counters.tx_packets == 3 * BATCH_PACKETS + 10


def _steps_until_scheduled(nested: bool) -> int:
    """A second vif's event arrives while dom0 is in a softirq run working through the
    first vif's requests: how many units before its port is handled."""
    dom0 = Dom0(nested_events=nested)
    a, b = dom0.vif(1), dom0.vif(2)
    queue_tx(dom0, a, flow_to(a, 1, dom0.nics), 20 * BATCH_PACKETS)
    for _ in range(3):
        dom0.step()
    queue_tx(dom0, b, flow_to(b, 2, dom0.nics), BATCH_PACKETS)
    steps = 0
    while not b.scheduled:
        assert dom0.step()
        steps += 1
    return steps


def test_nested_upcalls_handle_a_new_event_before_the_softirq_run_continues() -> None:
    """2.6.16-xen: the event enters a nested upcall at once. 2.6.18-xen: nested upcalls
    bail, so the port waits until the run ends (here: __do_softirq's restarts run out)."""
    assert _steps_until_scheduled(nested=True) <= 2  # after the turn in progress
    assert _steps_until_scheduled(nested=False) > 5


def test_notifications_after_a_poll_go_out_last_queued_first() -> None:
    dom0 = Dom0()
    vifs = [dom0.vif(i) for i in (1, 2, 3)]
    nic = dom0.nics[0]
    for vif in vifs:
        nic.rx.push((flow_to(vif, vif.domid, dom0.nics), DATA, 4, 0, 0))
    dom0.netback._irq(nic)
    dom0.run()
    assert dom0.woken == [3, 2, 1]


def test_the_first_packet_of_a_tx_turn_leaves_before_dom0_finishes_the_turn() -> None:
    """net_tx_action gathers the turn's requests, then hands each packet on: the NIC is
    sending while dom0 still works through the rest of the turn."""
    dom0 = Dom0()
    vif = dom0.vif(1)
    queue_tx(dom0, vif, flow_to(vif, 1, dom0.nics), BATCH_PACKETS)
    nic = dom0.nics[1]
    while nic.tx_free_at == 0:
        assert dom0.step()
    on_wire_at = dom0.engine.now
    while dom0.step():
        pass
    assert dom0.engine.now > on_wire_at  # dom0 was still busy with the turn
