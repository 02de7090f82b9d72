"""TCP at flow level: a window of packets in flight, ACK clocking, halving on loss, timeouts.

Packets travel in *chunks* (several packets of one flow moving together), so the model needs
one event per batch rather than per packet. The window is in full-size segments. The round
trip time is not a parameter: it is whatever the wires, rings, scheduling delays and queues
the chunks cross add up to, measured from each chunk's send time carried back by its ACK.
"""

from __future__ import annotations

from typing import Any

from simulator.engine import NS_PER_MS, NS_PER_US

DATA = 0
ACK = 1

#: Ethernet frame sizes on the wire, preamble and inter-frame gap included: a full 1500-byte
#: MTU packet is 1538 bytes, carrying 1448 bytes of TCP payload (timestamps on); a bare ACK
#: is a minimum frame, 84 bytes.
DATA_WIRE_BYTES = 1538
ACK_WIRE_BYTES = 84
PAYLOAD_BYTES = 1448

#: Receive window in segments: Linux 2.6.18 grows an untuned iperf receiver's buffer to at
#: most tcp_rmem[2] = 174760 bytes and advertises 3/4 of it (tcp_adv_win_scale = 2).
RWND_SEGMENTS = 174760 * 3 // 4 // PAYLOAD_BYTES
INITIAL_CWND = 3  # Linux 2.6 initial window for 1448-byte segments
MIN_RTO_NS = 200 * NS_PER_MS  # Linux TCP_RTO_MIN
ACK_EVERY = 2  # delayed ACK: one ACK per two full segments
#: An application-limited sender writes this many segments at a time and is never more
#: than one write ahead of its rate: the most it can hand TCP at once.
APP_WRITE_SEGMENTS = 8

Chunk = tuple["Flow", int, int, int, int]
"""(flow, kind, packets, data segments acknowledged (ACK only), send time of the data)."""


class Flow:
    """One TCP connection's sender state, wherever its sender sits (remote host or domU)."""

    __slots__ = (
        "acked_total",
        "active",
        "app_rate_pps",
        "cwnd",
        "delivered",
        "dst_nic",
        "fid",
        "inflight",
        "last_ack_ns",
        "losses",
        "lost_acked",
        "ping",
        "recovery_until",
        "rtt_samples",
        "rwnd",
        "src_nic",
        "srtt_ns",
        "ssthresh",
        "timer_set",
        "tokens",
        "tokens_at",
        "vif",
    )

    def __init__(self, fid: int, rwnd: int = RWND_SEGMENTS, app_rate_pps: float = 0.0) -> None:
        self.fid = fid
        # Route, set by the workload: the domU's vif, the NIC data enters by from a remote
        # sender (None if the domU sends) and the NIC it leaves by (None if the domU receives).
        self.vif: Any = None
        self.src_nic: Any = None
        self.dst_nic: Any = None
        self.rtt_samples: list[int] = []
        self.active = True
        self.ping = False  # an ICMP echo stream rather than a TCP connection
        self.timer_set = False
        self.cwnd = float(INITIAL_CWND)
        self.ssthresh = float(rwnd)
        self.rwnd = rwnd
        self.inflight = 0
        self.srtt_ns = 200 * NS_PER_US
        self.recovery_until = 0
        self.last_ack_ns = 0
        self.lost_acked = 0
        self.acked_total = 0  # data segments acknowledged to the sender
        self.delivered = 0  # data segments handed to the receiving application
        self.losses = 0
        self.app_rate_pps = app_rate_pps  # 0 means greedy
        self.tokens = 0.0
        self.tokens_at = 0

    def window(self) -> int:
        return int(min(self.cwnd, self.rwnd))

    def sendable(self, now: int) -> int:
        """Segments the sender may put out now (window and, if application-limited, rate)."""
        room = self.window() - self.inflight
        if room <= 0:
            return 0
        if self.app_rate_pps > 0:
            self._refill(now)
            room = min(room, int(self.tokens))
        return max(room, 0)

    def _refill(self, now: int) -> None:
        self.tokens = min(
            float(APP_WRITE_SEGMENTS),
            self.tokens + (now - self.tokens_at) * self.app_rate_pps / 1e9,
        )
        self.tokens_at = now

    def next_token_ns(self, now: int, segments: int = 1) -> int:
        """When an application-limited sender will next have ``segments`` to send."""
        missing = max(0.0, segments - self.tokens)
        return now + int(missing * 1e9 / self.app_rate_pps) + 1

    def on_sent(self, count: int) -> None:
        self.inflight += count
        if self.app_rate_pps > 0:
            self.tokens -= count

    def on_ack(self, acked: int, sent_ns: int, now: int) -> None:
        acked += self.lost_acked
        self.lost_acked = 0
        acked = min(acked, self.inflight)
        self.inflight -= acked
        self.acked_total += acked
        self.last_ack_ns = now
        sample = now - sent_ns
        if sample > 0:
            self.srtt_ns += (sample - self.srtt_ns) // 8
        if now < self.recovery_until:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + acked, float(self.rwnd))
        else:
            self.cwnd = min(self.cwnd + acked / self.cwnd, float(self.rwnd))

    def on_data_lost(self, count: int, now: int) -> None:
        """Segments dropped on the way: retransmitted later; halve the window once per RTT."""
        self.inflight = max(0, self.inflight - count)
        self.losses += count
        if now >= self.recovery_until:
            self.ssthresh = max(self.window() / 2.0, 2.0)
            self.cwnd = self.ssthresh
            self.recovery_until = now + self.srtt_ns

    def on_ack_lost(self, acked: int) -> None:
        """A dropped ACK: the next one acknowledges cumulatively."""
        self.lost_acked += acked

    def on_timeout(self, now: int) -> None:
        """Retransmission timeout: everything in flight is presumed lost, back to one segment."""
        self.losses += self.inflight
        self.inflight = 0
        self.lost_acked = 0
        self.ssthresh = max(self.window() / 2.0, 2.0)
        self.cwnd = 1.0
        self.recovery_until = now
        self.last_ack_ns = now

    def rto_ns(self) -> int:
        return max(MIN_RTO_NS, 4 * self.srtt_ns)
