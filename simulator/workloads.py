"""What runs in each domU, and the remote machines on the other side of the NICs.

A domU's guest is its netfront plus the application: a greedy or rate-limited TCP receiver
or sender, a router forwarding between two NICs, a CPU burner, a ping responder, or nothing.
Remote endpoints are native Linux hosts with CPU to spare: they answer data with ACKs and
ACKs with new data, limited only by TCP and the wires.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from simulator.credit import Unit, VCpu, no_effect
from simulator.engine import NS_PER_MS, NS_PER_US, Engine
from simulator.netback import BATCH_PACKETS, Dom0Netback
from simulator.network import NETFRONT_RX_TARGET, Nic, Vif
from simulator.tcp import ACK, ACK_EVERY, APP_WRITE_SEGMENTS, DATA, PAYLOAD_BYTES, Chunk, Flow

#: CPU cost in a domU per data segment received: netfront, TCP receive, copy to the
#: application. Chosen so receive on one domU at 900 Mb/s uses about 0.56 of a CPU, as measured.
DOMU_RX_DATA_NS = 6_300
#: Per ACK the domU's TCP receiver generates and netfront queues.
DOMU_TX_ACK_NS = 1_000
#: Per data segment a domU's TCP sender builds and netfront queues. Chosen so send on one
#: domU at 914 Mb/s uses about 0.41 of a CPU, as measured.
DOMU_TX_DATA_NS = 4_200
#: Per ACK a domU's TCP sender processes.
DOMU_RX_ACK_NS = 1_200
#: Per packet a domU routes from one interface to the other (IP forwarding, no copy to user).
#: Chosen so forwarding 660 Mb/s through one domU uses about 0.25 of a CPU, as measured.
DOMU_FWD_DATA_NS = 3_700
DOMU_FWD_ACK_NS = 1_100
#: Per batch: the event-channel upcall and netfront's poll entry.
DOMU_BATCH_NS = 2 * NS_PER_US
#: Segments a sending domU's TCP builds before netfront puts them on the ring and dom0 can
#: start on them (tcp_write_xmit hands each segment on as it is built; 8 x 4.2 us = 34 us
#: of domU work per group, finer than the NIC's 60 us interrupt coalescing).
SEND_GROUP = 8
#: How often a TCP sender checks for a retransmission timeout.
RTO_CHECK_NS = 50 * NS_PER_MS
#: Spread of a remote host's response time.
REMOTE_JITTER_NS = 2 * NS_PER_US
#: Mean period of a CPU burner's duty cycle. Each period is drawn between half and one and a
#: half of it: an application's timers are not in step with the hypervisor's 10 ms tick, and
#: bursts that kept one phase against the sampled tick would be charged for none of them (or
#: all). A burner holds at most ``BURN_BACKLOG_NS`` of work it has not started.
BURN_PERIOD_NS = 10 * NS_PER_MS
BURN_BACKLOG_NS = 2 * BURN_PERIOD_NS


class Remote:
    """Remote TCP endpoints and ping sources behind the NICs."""

    def __init__(self, engine: Engine, dom0: Dom0Netback, rng: random.Random) -> None:
        self.engine = engine
        self.dom0 = dom0
        self.rng = rng
        self._jitter_bits = REMOTE_JITTER_NS.bit_length()

    def inbound(self, nic: Nic, chunk: Chunk) -> None:
        # Remote hosts' timing varies by a few microseconds (interrupts, timers): with the
        # burners' periods, the only randomness in the model, seeded, so runs are
        # reproducible. Uniform over
        # [0, REMOTE_JITTER_NS) by rejection on raw bits, as CPython's randrange does, here
        # compiled (randrange is pure Python, a tenth of a run) and fixed in this code
        # whatever a Python version's randrange does.
        jitter = self.rng.getrandbits(self._jitter_bits)
        while jitter >= REMOTE_JITTER_NS:
            jitter = self.rng.getrandbits(self._jitter_bits)
        nic.inbound(chunk, self.engine.now + jitter)
        self.dom0.schedule_irq(nic)

    def receive(self, chunk: Chunk) -> None:
        """A chunk this host transmitted reaches the remote end."""
        flow, kind, count, acked, sent = chunk
        now = self.engine.now
        if flow.ping:
            flow.rtt_samples.append(now - sent)
            return
        if kind == DATA:
            flow.delivered += count
            acks = -(-count // ACK_EVERY)
            self.inbound(flow.dst_nic, (flow, ACK, acks, count, sent))
        else:
            flow.on_ack(acked, sent, now)
            self.send(flow)

    def send(self, flow: Flow) -> None:
        """A remote sender puts out what its window (and application rate) allows."""
        if not flow.active:
            return
        now = self.engine.now
        n = flow.sendable(now)
        if n > 0:
            flow.on_sent(n)
            self.inbound(flow.src_nic, (flow, DATA, n, 0, now))
        # An application-limited sender with window to spare sends again when its rate
        # allows, whether or not an ACK comes first.
        if flow.app_rate_pps > 0 and flow.window() > flow.inflight and not flow.timer_set:
            flow.timer_set = True
            self.engine.at(flow.next_token_ns(now), self._token, flow)

    def _token(self, flow: Flow) -> None:
        flow.timer_set = False
        self.send(flow)

    def ping(self, flow: Flow, interval_ns: int) -> None:
        if not flow.active:
            return
        self.inbound(flow.src_nic, (flow, ACK, 1, 0, self.engine.now))
        self.engine.at(self.engine.now + interval_ns, self.ping, flow, interval_ns)


class DomUNet:
    """A domU running one network workload over its vif."""

    def __init__(
        self,
        engine: Engine,
        *,
        vif: Vif,
        flow: Flow | None,
        role: str,
        dom0: Dom0Netback,
        remote: Remote,
    ) -> None:
        if role not in ("receive", "send", "forward", "ping"):
            raise ValueError(f"unknown network role {role!r}")
        self.engine = engine
        self.vif = vif
        self.flow = flow
        self.role = role
        self.dom0 = dom0
        self.remote = remote
        self.wake_self: Callable[[], None] = lambda: None
        self._sending = False  # in a run of send groups: the poll entry is paid
        # netfront's tx-completion interrupt matters to a domU waiting for ring space, a
        # sender; a receiver's or router's completions are collected in its next poll.
        vif.wake_on_tx_done = role == "send"

    def start(self) -> None:
        flow = self.flow
        if flow is None:
            return
        if self.role in ("receive", "forward"):
            self.remote.send(flow)
        elif self.role == "send":
            self.wake_self()
        self.engine.at(self.engine.now + RTO_CHECK_NS, self._rto_check)

    def stop(self) -> None:
        if self.flow is not None:
            self.flow.active = False

    def _rto_check(self) -> None:
        flow = self.flow
        if flow is None or not flow.active:
            return
        now = self.engine.now
        # Dropped segments leave `inflight` at once (they are resent from the window), so a
        # flow that lost its whole window has nothing in flight and no ACK coming to clock
        # out the resend: real TCP still counts them outstanding and its timer fires.
        stalled = flow.inflight > 0 or flow.sendable(now) > 0
        if stalled and now - flow.last_ack_ns > flow.rto_ns():
            flow.on_timeout(now)
            if self.role == "send":
                self.wake_self()
            else:
                self.remote.send(flow)
        self.engine.at(now + RTO_CHECK_NS, self._rto_check)

    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        vif = self.vif
        if vif.rx.n:
            return self._rx_batch()
        flow = self.flow
        if self.role == "send" and flow is not None and flow.active:
            n = min(flow.sendable(now), vif.tx.space(), SEND_GROUP)
            if n > 0:
                return self._tx_batch(n)
            if flow.app_rate_pps > 0 and flow.window() > flow.inflight and not flow.timer_set:
                flow.timer_set = True
                # Its application sleeps until its rate allows a whole write: waking the
                # vCPU for every segment would cost a wake-up per segment.
                self.engine.at(flow.next_token_ns(now, APP_WRITE_SEGMENTS), self._token)
        self._sending = False
        return None

    def _token(self) -> None:
        if self.flow is not None:
            self.flow.timer_set = False
        self.wake_self()

    def _rx_batch(self) -> Unit:
        self._sending = False
        vif = self.vif
        chunks = vif.rx.take(BATCH_PACKETS)
        role = self.role
        cost = DOMU_BATCH_NS
        for _, kind, count, _, _ in chunks:
            if role == "receive":
                cost += count * DOMU_RX_DATA_NS + (-(-count // ACK_EVERY)) * DOMU_TX_ACK_NS
            elif role == "send":
                cost += count * DOMU_RX_ACK_NS
            elif role == "forward":
                cost += count * (DOMU_FWD_ACK_NS if kind == ACK else DOMU_FWD_DATA_NS)
            else:
                cost += count * DOMU_TX_ACK_NS

        def commit(t: int) -> None:
            queued = False
            if role == "receive":
                # One cumulative ACK train per batch: a delayed ACK every two segments.
                data = 0
                newest = 0
                for _flow, kind, count, _, sent in chunks:
                    if kind == DATA:
                        data += count
                        newest = max(newest, sent)
                if data and self.flow is not None:
                    self.flow.delivered += data
                    acks = -(-data // ACK_EVERY)
                    queued = self._queue((self.flow, ACK, acks, data, newest))
            elif role == "send":
                for flow, kind, _, acked, sent in chunks:
                    if kind == ACK:
                        flow.on_ack(acked, sent, t)
            else:  # forward or ping: the packets go back out
                for chunk in chunks:
                    queued |= self._queue(chunk)
            # netfront refills its receive buffers at the end of the poll.
            vif.posted = NETFRONT_RX_TARGET - vif.rx.n
            self.dom0.rx_refilled(vif)
            if queued:
                self.dom0.tx_queued(vif)

        return Unit(cost, commit)

    def _queue(self, chunk: Chunk) -> bool:
        tx = self.vif.tx
        count = chunk[2]
        room = tx.space()
        if room < count:
            lost = count - room
            self.vif.counters.tx_drops += lost
            flow = chunk[0]
            if chunk[1] == DATA:
                flow.on_data_lost(lost, self.engine.now)
            else:
                flow.on_ack_lost(chunk[3] * lost // count)
            if room == 0:
                return False
            chunk = (flow, chunk[1], room, chunk[3] - chunk[3] * lost // count, chunk[4])
        tx.push(chunk)
        return True

    def _tx_batch(self, n: int) -> Unit:
        cost = n * DOMU_TX_DATA_NS + (0 if self._sending else DOMU_BATCH_NS)
        self._sending = True
        flow = self.flow
        assert flow is not None

        def commit(t: int) -> None:
            k = min(n, flow.sendable(t), self.vif.tx.space())
            if k > 0:
                flow.on_sent(k)
                self.vif.tx.push((flow, DATA, k, 0, t))
                self.dom0.tx_queued(self.vif)

        return Unit(cost, commit)


class Burner:
    """A CPU-bound application using ``duty`` of a CPU on average (1.0 = always busy)."""

    def __init__(self, engine: Engine, duty: float, rng: random.Random) -> None:
        if not 0.0 <= duty <= 1.0:
            raise ValueError(f"duty must be in [0, 1], got {duty}")
        self.engine = engine
        self.duty = duty
        self.rng = rng
        self.left_ns = 0  # work arrived and not yet started
        self.active = True
        self.wake_self: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._period()

    def stop(self) -> None:
        self.active = False

    def _period(self) -> None:
        if not self.active:
            return
        period = BURN_PERIOD_NS // 2 + int(self.rng.random() * BURN_PERIOD_NS)
        self.left_ns = min(BURN_BACKLOG_NS, self.left_ns + int(self.duty * period))
        if self.left_ns > 0:
            self.wake_self()
        self.engine.at(self.engine.now + period, self._period)

    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        if self.left_ns <= 0 or not self.active:
            return None
        # Taken now: work arriving while this runs adds to what follows it.
        cost, self.left_ns = self.left_ns, 0
        return Unit(cost, no_effect)


class Idle:
    """A domain with nothing to do."""

    wake_self: Callable[[], None] = staticmethod(lambda: None)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def plan(self, vcpu: VCpu, now: int) -> Unit | None:
        return None


def goodput_mbps(segments: int, seconds: float) -> float:
    """TCP payload throughput of ``segments`` full segments over ``seconds``."""
    return segments * PAYLOAD_BYTES * 8 / seconds / 1e6 if seconds > 0 else 0.0
