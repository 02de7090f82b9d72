"""Rings, NICs and the split driver's drops."""

from __future__ import annotations

from simulator.network import Nic, Ring
from simulator.tcp import ACK, DATA, Chunk, Flow


def test_ring_merges_same_flow_and_splits_on_take() -> None:
    flow = Flow(1)
    ring = Ring(100)
    ring.push((flow, DATA, 10, 0, 5))
    ring.push((flow, DATA, 6, 0, 7))
    assert len(ring.q) == 1
    assert ring.n == 16
    taken = ring.take(4)
    assert [c[2] for c in taken] == [4]
    assert ring.n == 12


def test_ring_take_splits_acked_counts_proportionally() -> None:
    flow = Flow(1)
    ring = Ring(100)
    ring.push((flow, ACK, 10, 20, 0))
    first = ring.take(5)
    rest = ring.take(5)
    assert first[0][3] + rest[0][3] == 20


def test_nic_tail_drops_what_arrives_at_a_full_rx_ring() -> None:
    """Packets arriving while dom0 has not emptied the ring are dropped, the last ones."""
    nic = Nic(0, 1e9)
    flow = Flow(1)
    dropped: list[Chunk] = []
    nic.inbound((flow, DATA, 500, 0, 0), 0)
    nic.materialize(10**9, dropped.append)
    assert nic.rx.n == nic.rx.cap
    assert sum(c[2] for c in dropped) == 500 - nic.rx.cap
    assert nic.rx_drops == 500 - nic.rx.cap


def test_wire_serialises_at_line_rate() -> None:
    """A train of full frames takes 12.3 us per frame on a gigabit wire."""
    nic = Nic(0, 1e9)
    flow = Flow(1)
    first = nic.inbound((flow, DATA, 100, 0, 0), 0)
    assert nic.wire_free_at - first == 99 * nic.gap_ns(DATA)
    assert nic.gap_ns(DATA) == 12_304
