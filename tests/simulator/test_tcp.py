"""Flow-level TCP: window growth, halving on loss, timeouts."""

from __future__ import annotations

from simulator.tcp import INITIAL_CWND, RWND_SEGMENTS, Flow


def test_slow_start_then_window_capped_by_receive_window() -> None:
    flow = Flow(1)
    assert flow.sendable(0) == INITIAL_CWND
    for _ in range(20):
        n = flow.sendable(0)
        flow.on_sent(n)
        flow.on_ack(n, 0, 1000)
    assert flow.window() == RWND_SEGMENTS


def test_loss_halves_the_window_once_per_round_trip() -> None:
    flow = Flow(1)
    flow.cwnd = 80.0
    flow.ssthresh = 60.0
    flow.on_sent(80)
    flow.on_data_lost(3, now=1_000_000)
    assert flow.cwnd == 40.0
    flow.on_data_lost(3, now=1_000_001)  # same window: no second halving
    assert flow.cwnd == 40.0
    flow.on_data_lost(1, now=1_000_000 + 10 * flow.srtt_ns)
    assert flow.cwnd == 20.0


def test_timeout_restarts_from_one_segment() -> None:
    flow = Flow(1)
    flow.cwnd = 50.0
    flow.on_sent(50)
    flow.on_timeout(now=5)
    assert flow.cwnd == 1.0
    assert flow.inflight == 0


def test_application_limited_flow_sends_at_its_rate() -> None:
    """A 1000 segments/s sender gets about one segment per millisecond."""
    flow = Flow(1, app_rate_pps=1000.0)
    sent = 0
    for ms in range(1, 1001):
        now = ms * 1_000_000
        n = flow.sendable(now)
        flow.on_sent(n)
        sent += n
        flow.on_ack(n, now, now)
    assert 990 <= sent <= 1010


def test_an_application_writing_in_buffers_waits_for_a_whole_write() -> None:
    """At 1000 segments/s a write of 8 is due 8 ms after the last, a single segment 1 ms."""
    flow = Flow(1, app_rate_pps=1000.0)
    flow.cwnd = 100.0  # the window is not what limits it
    flow.sendable(0)  # tokens counted from time 0
    assert flow.next_token_ns(0) == 1_000_001
    assert flow.next_token_ns(0, 8) == 8_000_001
    assert flow.sendable(8_000_001) == 8
