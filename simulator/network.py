"""Rings, virtual interfaces and physical NICs with their wires.

A `Ring` is a FIFO of chunks with a slot limit. A `Vif` is one domU's pair of rings with
dom0's netback (rx: dom0 -> domU, tx: domU -> dom0) and its counters, kept from the guest's
point of view like a real host's ``interfaceStats``. A `Nic` is a physical port: its inbound
wire delivers chunks at line rate into a receive ring of descriptors (tail drop when dom0 has
not emptied it), its outbound wire serialises what dom0 transmits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from simulator.engine import NS_PER_US
from simulator.tcp import ACK, ACK_WIRE_BYTES, DATA_WIRE_BYTES, Chunk

#: Slots of a netfront/netback ring with 4 KiB pages (NET_RX_RING_SIZE, NET_TX_RING_SIZE).
VIF_RING_SLOTS = 256
#: Packets a vif's qdisc holds while netback has stopped its queue for lack of posted
#: receive buffers, before dropping (the vif's tx_queue_len in Linux 2.6.18-xen netback).
VIF_QUEUE_PACKETS = 32
#: Receive buffers netfront keeps posted on its rx ring, refilled at the end of each poll
#: (RX_DFL_MIN_TARGET in Linux 2.6.18-xen netfront): the most a domU can take in one go.
NETFRONT_RX_TARGET = 64
#: What a domU's stack queues behind a full tx ring (its device's txqueuelen) before dropping.
DOMU_TXQUEUE_PACKETS = 1000
#: Receive descriptors of the tg3 NIC (TG3_DEF_RX_RING_PENDING).
NIC_RX_RING_SLOTS = 200
#: Transmit queue of dom0's physical interface (txqueuelen).
NIC_TXQUEUE_PACKETS = 1000
#: Receive interrupt coalescing: the NIC interrupts once this many frames are waiting, or
#: this long after the first one arrived, whichever comes first (ethtool -C rx-frames,
#: rx-usecs). More moderation than tg3's default (5 frames, 20 us), as a gigabit NIC tuned
#: for throughput would have; it sets the batch size, and with it how many events the
#: simulation processes per simulated second.
NIC_RX_COALESCE_FRAMES = 16
NIC_RX_COALESCE_NS = 60 * NS_PER_US
#: One-way delay between this host's NIC and a remote endpoint: switch store-and-forward of a
#: full frame (12 us) plus the remote Linux stack's turnaround, about 25 us on a gigabit LAN.
REMOTE_DELAY_NS = 25 * NS_PER_US


#: Bytes on the wire that interface counters do not count: preamble, inter-frame gap, FCS.
FRAME_OVERHEAD_BYTES = 24


def wire_bytes(kind: int) -> int:
    return ACK_WIRE_BYTES if kind == ACK else DATA_WIRE_BYTES


class Ring:
    """A FIFO of chunks holding at most ``cap`` packets."""

    __slots__ = ("cap", "n", "q")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.q: deque[Chunk] = deque()
        self.n = 0

    def space(self) -> int:
        return self.cap - self.n

    def push(self, chunk: Chunk) -> None:
        """Append, merging with the tail chunk when it is the same flow and kind."""
        q = self.q
        if q:
            tail = q[-1]
            if tail[0] is chunk[0] and tail[1] == chunk[1]:
                q[-1] = (
                    tail[0],
                    tail[1],
                    tail[2] + chunk[2],
                    tail[3] + chunk[3],
                    max(tail[4], chunk[4]),
                )
                self.n += chunk[2]
                return
        q.append(chunk)
        self.n += chunk[2]

    def take(self, limit: int) -> list[Chunk]:
        """Remove up to ``limit`` packets from the head, splitting a chunk if needed."""
        out: list[Chunk] = []
        q = self.q
        while q and limit > 0:
            flow, kind, count, acked, sent = q[0]
            if count <= limit:
                q.popleft()
                out.append((flow, kind, count, acked, sent))
                limit -= count
                self.n -= count
            else:
                part_acked = acked * limit // count
                out.append((flow, kind, limit, part_acked, sent))
                q[0] = (flow, kind, count - limit, acked - part_acked, sent)
                self.n -= limit
                limit = 0
        return out


class VifTally:
    """The running totals a vif keeps (guest's point of view); snapshots are VifCounters."""

    __slots__ = ("rx_bytes", "rx_drops", "rx_packets", "tx_bytes", "tx_drops", "tx_packets")

    def __init__(self) -> None:
        self.rx_bytes = 0
        self.rx_packets = 0
        self.rx_drops = 0
        self.tx_bytes = 0
        self.tx_packets = 0
        self.tx_drops = 0


class Vif:
    """A domU's split-driver interface: two rings, an event channel port, counters, and
    the state netback and netfront share through the rings (posted buffers, event flags)."""

    __slots__ = (
        "attached",
        "counters",
        "domid",
        "name",
        "port",
        "posted",
        "qdisc",
        "rx",
        "rx_event",
        "scheduled",
        "stopped",
        "tx",
        "tx_event",
        "wake_domu",
        "wake_on_tx_done",
    )

    def __init__(self, domid: int, index: int, port: int, wake_domu: Callable[[], None]) -> None:
        self.domid = domid
        self.name = f"vif{domid}.{index}"
        self.port = port
        self.rx = Ring(VIF_RING_SLOTS)
        self.tx = Ring(VIF_RING_SLOTS + DOMU_TXQUEUE_PACKETS)
        self.counters = VifTally()
        self.wake_domu = wake_domu
        self.attached = False
        # Receive buffers posted and not yet filled; netback stops the queue when few remain.
        self.posted = NETFRONT_RX_TARGET
        self.stopped = False
        self.qdisc = Ring(VIF_QUEUE_PACKETS)
        # The vif's event-channel port is pending for dom0: buffers posted for a stopped
        # queue (rx_event), requests queued while off net_schedule_list (tx_event).
        self.rx_event = False
        self.tx_event = False
        self.scheduled = False  # on netback's net_schedule_list
        # Whether a transmit completion wakes the domU (its transmit waits for ring space).
        self.wake_on_tx_done = False


class WireArrival:
    """Packets of one chunk arriving one after another, ``gap_ns`` apart, from ``first_ns``."""

    __slots__ = ("acked", "count", "first_ns", "flow", "gap_ns", "kind", "sent")

    def __init__(self, chunk: Chunk, first_ns: int, gap_ns: int) -> None:
        self.flow, self.kind, self.count, self.acked, self.sent = chunk
        self.first_ns = first_ns
        self.gap_ns = gap_ns


class Nic:
    """A physical port at line rate: inbound wire into an rx descriptor ring, outbound wire."""

    __slots__ = (
        "index",
        "irq_armed",
        "irq_pending",
        "ns_per_byte",
        "port_pending",
        "rx",
        "rx_drops",
        "tx_free_at",
        "wire",
        "wire_free_at",
    )

    def __init__(self, index: int, rate_bps: float) -> None:
        self.index = index
        self.ns_per_byte = 8e9 / rate_bps
        self.wire: deque[WireArrival] = deque()
        self.wire_free_at = 0
        self.rx = Ring(NIC_RX_RING_SLOTS)
        self.rx_drops = 0
        self.tx_free_at = 0
        self.irq_armed = True
        self.irq_pending = False  # NAPI poll scheduled
        self.port_pending = False  # interrupt raised, its handler not yet run in dom0

    def gap_ns(self, kind: int) -> int:
        return int(wire_bytes(kind) * self.ns_per_byte)

    def inbound(self, chunk: Chunk, now: int) -> int:
        """A remote host puts a chunk on the wire; returns the arrival time of its first packet."""
        gap = self.gap_ns(chunk[1])
        first = max(now + REMOTE_DELAY_NS, self.wire_free_at + gap)
        wire = self.wire
        if wire:
            tail = wire[-1]
            if (
                tail.flow is chunk[0]
                and tail.kind == chunk[1]
                and first == tail.first_ns + tail.count * gap
            ):
                # Back-to-back packets of the same flow: extend the train.
                tail.count += chunk[2]
                tail.acked += chunk[3]
                tail.sent = max(tail.sent, chunk[4])
                self.wire_free_at = first + gap * (chunk[2] - 1)
                return first
        wire.append(WireArrival(chunk, first, gap))
        self.wire_free_at = first + gap * (chunk[2] - 1)
        return first

    def irq_due_ns(self, now: int) -> int | None:
        """When coalescing lets the NIC interrupt for what is waiting or on the wire."""
        waiting = self.rx.n
        if not self.wire and waiting == 0:
            return None
        # The coalescing timer runs from the first frame not yet signalled.
        first = now if waiting else max(now, self.wire[0].first_ns)
        need = NIC_RX_COALESCE_FRAMES - waiting
        frames_at = 0
        if need > 0:
            frames_at = -1
            for w in self.wire:
                if need <= w.count:
                    frames_at = w.first_ns + (need - 1) * w.gap_ns
                    break
                need -= w.count
        timeout_at = first + NIC_RX_COALESCE_NS
        return timeout_at if frames_at < 0 else min(frames_at, timeout_at)

    def materialize(self, now: int, on_drop: Callable[[Chunk], None]) -> None:
        """Move packets that have arrived by ``now`` into the rx ring; tail-drop the excess."""
        wire = self.wire
        ring = self.rx
        while wire and wire[0].first_ns <= now:
            w = wire[0]
            arrived = min(w.count, (now - w.first_ns) // w.gap_ns + 1)
            part_acked = w.acked * arrived // w.count
            room = ring.space()
            keep = min(arrived, room)
            if keep:
                kept_acked = part_acked * keep // arrived
                ring.push((w.flow, w.kind, keep, kept_acked, w.sent))
            else:
                kept_acked = 0
            if arrived > keep:
                self.rx_drops += arrived - keep
                on_drop((w.flow, w.kind, arrived - keep, part_acked - kept_acked, w.sent))
            if arrived == w.count:
                wire.popleft()
            else:
                w.count -= arrived
                w.acked -= part_acked
                w.first_ns += arrived * w.gap_ns

    def transmit(self, chunk: Chunk, now: int) -> int | None:
        """Queue a chunk on the outbound wire; the time its last packet reaches the remote end,
        or None if the transmit queue is full (dropped)."""
        gap = self.gap_ns(chunk[1])
        start = max(now, self.tx_free_at)
        backlog = (start - now) // max(gap, 1)
        if backlog > NIC_TXQUEUE_PACKETS:
            return None
        self.tx_free_at = start + gap * chunk[2]
        return self.tx_free_at + REMOTE_DELAY_NS
