"""Counters to rates: first sample, resets, domains coming and going."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from simulator.scenario import parse_scenario
from xvrd.backends.base import (
    XEN_WEIGHT_RANGE,
    BackendError,
    Domain,
    DomainCounters,
    DomainGone,
    HostInfo,
    Pinning,
    SchedParams,
    VifCounters,
)
from xvrd.backends.simulated import SimulatorBackend
from xvrd.sampler import Sampler, Unread


def test_first_sample_has_no_rates_and_the_second_has_them(backend: SimulatorBackend) -> None:
    sampler = Sampler(backend)
    first = sampler.sample()
    assert not first.complete
    assert all(d.rx_mbps is None for d in first.domains)
    backend.host.advance(2.0)
    second = sampler.sample()
    assert second.complete
    assert second.interval_s == 2.0
    assert [d.name for d in second.domains] == ["Domain-0", "dom1", "dom2", "dom3", "dom4"]
    total = sum(d.rx_mbps or 0 for d in second.domus())
    assert 850 < total < 1000  # frame bytes of about 900 Mb/s of TCP goodput
    assert all(0 <= (d.cpu_pct or 0) <= 100 for d in second.domains)
    assert second.idle_pct is not None


def test_domain_that_appears_or_restarts_has_no_rates_that_tick() -> None:
    scenario = parse_scenario(
        {
            "domains": [
                {"name": "a", "workload": "receive"},
                {"name": "b", "workload": "receive", "start_s": 3.0, "stop_s": 5.0},
            ],
            "phases": [{"at_s": 7.0, "action": "start", "domain": "b"}],
        }
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    sampler = Sampler(backend)
    sampler.sample()
    backend.host.advance(2.0)
    assert sampler.sample().complete
    backend.host.advance(2.0)  # b appears
    obs = sampler.sample()
    assert not obs.complete
    assert next(d for d in obs.domains if d.name == "b").rx_mbps is None
    backend.host.advance(2.0)  # b stopped at 5 s
    obs = sampler.sample()
    assert [d.name for d in obs.domains] == ["Domain-0", "a"]
    assert obs.complete
    backend.host.advance(2.0)  # b started again at 7 s: a new domain, the same UUID
    obs = sampler.sample()
    assert next(d for d in obs.domains if d.name == "b").rx_mbps is None


@dataclass
class ScriptedHost:
    """A host whose counters a test sets directly (for resets the simulator cannot make)."""

    now_ns: int = 0
    cpu_ns: int = 0
    rx_bytes: int = 0
    gone: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    hotplugged_bytes: int | None = None  # a second vif, with what it carried before

    def info(self) -> HostInfo:
        return HostInfo(
            "scripted", "test://", "credit", frozenset({0, 1}), XEN_WEIGHT_RANGE, True, True
        )

    def clock_ns(self) -> int:
        return self.now_ns

    def list_domains(self) -> list[Domain]:
        return [Domain(0, "Domain-0", "u0", 0, 1), Domain(1, "d", "u1", 1, 1)]

    def read_counters(self, uuid: str) -> DomainCounters:
        if uuid in self.gone:
            raise DomainGone(uuid)
        if uuid in self.broken:
            raise BackendError(f"{uuid}: Interface not found")
        vifs = [VifCounters("vif1.0", self.rx_bytes, self.rx_bytes // 1500, 0, 0, 0, 0)]
        if self.hotplugged_bytes is not None:
            b = self.hotplugged_bytes
            vifs.append(VifCounters("vif1.1", b, b // 1500, 0, 0, 0, 0))
        return DomainCounters(uuid, self.cpu_ns, tuple(vifs) if uuid == "u1" else ())

    def get_sched(self, uuid: str) -> SchedParams:
        return SchedParams(256)

    def get_pinning(self, uuid: str) -> Pinning:
        return Pinning((frozenset({0, 1}),))


def test_counters_going_backwards_give_no_rate_not_a_negative_one() -> None:
    host = ScriptedHost()
    sampler = Sampler(host)  # type: ignore[arg-type]
    sampler.sample()
    host.now_ns, host.cpu_ns, host.rx_bytes = 10**9, 5 * 10**8, 125_000_000
    obs = sampler.sample()
    d = obs.domains[1]
    assert d.rx_mbps == 1000.0
    assert d.cpu_pct == 25.0
    host.now_ns, host.rx_bytes = 2 * 10**9, 1000  # the domain rebooted: counters reset
    obs = sampler.sample()
    assert obs.domains[1].rx_mbps is None
    assert not obs.complete


def test_domain_gone_between_listing_and_reading_is_left_out() -> None:
    host = ScriptedHost(gone={"u1"})
    obs = Sampler(host).sample()  # type: ignore[arg-type]
    assert [d.uuid for d in obs.domains] == ["u0"]


@pytest.mark.usefixtures("default_logging")
def test_a_domain_the_host_cannot_read_is_left_out_and_the_rest_sampled() -> None:
    """A vif the host cannot read (in a driver domain, say) does not stop the tick: that
    domain is left out, logged once when it starts failing and once when it recovers."""
    host = ScriptedHost(broken={"u1"})
    sampler = Sampler(host)  # type: ignore[arg-type]
    with capture_logs() as logs:
        sampler.sample()
        host.now_ns = 10**9
        obs = sampler.sample()
        assert [d.uuid for d in obs.domains] == ["u0"]
        assert obs.complete
        assert sampler.unreadable == {"u1": Unread("d", 1, "u1: Interface not found")}
        host.broken.clear()
        host.now_ns = 2 * 10**9
        obs = sampler.sample()
    assert [d.uuid for d in obs.domains] == ["u0", "u1"]
    assert [e["event"] for e in logs] == [
        "domain left out: cannot read it",
        "domain readable again",
    ]


def test_a_domain_unread_for_a_tick_is_named_and_its_rates_resume_across_the_gap() -> None:
    """The observation names the domain it could not read (still running, not destroyed),
    and once it reads again its rates span the gap from the last reading, so that tick
    is complete rather than one more without rates."""
    host = ScriptedHost()
    sampler = Sampler(host)  # type: ignore[arg-type]
    sampler.sample()
    host.broken.add("u1")
    host.now_ns, host.rx_bytes = 10**9, 125_000_000
    obs = sampler.sample()
    assert obs.unreadable == frozenset({"u1"})
    host.broken.clear()
    host.now_ns, host.rx_bytes = 2 * 10**9, 250_000_000
    obs = sampler.sample()
    assert obs.unreadable == frozenset()
    assert obs.complete
    assert obs.domains[1].rx_mbps == 1000.0  # 250 MB over the 2 s since the last reading


def test_a_vif_plugged_since_the_last_reading_counts_from_the_next() -> None:
    """A vif that appears carrying 10 GB (counted before this interval, or seen late) does
    not show as 80 Gb/s: rates cover the vifs present in both readings."""
    host = ScriptedHost()
    sampler = Sampler(host)  # type: ignore[arg-type]
    sampler.sample()
    host.now_ns, host.rx_bytes = 10**9, 125_000_000
    host.hotplugged_bytes = 10**10
    assert sampler.sample().domains[1].rx_mbps == 1000.0
    host.now_ns, host.rx_bytes = 2 * 10**9, 250_000_000
    host.hotplugged_bytes = 10**10 + 12_500_000
    assert sampler.sample().domains[1].rx_mbps == 1100.0


def test_a_reset_forgets_which_domains_were_unread() -> None:
    """After a reconnect nothing is known of the domains yet: status names none as unread."""
    host = ScriptedHost(broken={"u1"})
    sampler = Sampler(host)  # type: ignore[arg-type]
    sampler.sample()
    assert set(sampler.unreadable) == {"u1"}
    sampler.reset()
    assert sampler.unreadable == {}
