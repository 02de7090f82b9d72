"""The loop in-process on a simulated host, advanced by exactly one interval per tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.host import SimulatedHost
from simulator.scenario import report_scenario
from xvrd.backends.base import Pinning
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import Settings
from xvrd.control.api import ControlError
from xvrd.daemon import Daemon
from xvrd.policy import StaticDom0Policy
from xvrd.state import StateStore

DOM0 = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def host() -> SimulatedHost:
    return SimulatedHost(report_scenario("receive", n_domus=2), seed=0)


def make(host: SimulatedHost, tmp_path: Path, **kw: object) -> Daemon:
    settings = Settings(state_dir=tmp_path, interval_s=0.5)
    d = Daemon(
        SimulatorBackend(host, speed=None),
        settings,
        StateStore(tmp_path),
        policy=StaticDom0Policy(2048),
        **kw,  # type: ignore[arg-type]
    )
    d.start()
    return d


def step(host: SimulatedHost, d: Daemon, n: int = 1) -> None:
    for _ in range(n):
        host.advance(0.5)
        d.tick()


def test_first_tick_acts_on_nothing(host: SimulatedHost, tmp_path: Path) -> None:
    """Without two readings nothing is known, so the policy is not even asked."""
    d = make(host, tmp_path)
    r = d.tick()
    assert not r.complete
    assert r.applied == ()
    assert host.domain(0).weight == 256


def test_policy_change_records_original_then_restores(host: SimulatedHost, tmp_path: Path) -> None:
    """The actuator saves dom0's original before changing it; stop puts it back."""
    d = make(host, tmp_path)
    step(host, d, 2)
    assert host.domain(0).weight == 2048
    assert StateStore(tmp_path).load().originals[DOM0].weight == 256
    doc = d.status()
    assert doc["domains"][0]["weight_source"] == "auto"
    assert doc["actions"][-1]["reason"] == "static dom0 weight from config"
    d.stop()
    assert host.domain(0).weight == 256
    state = StateStore(tmp_path).load()
    assert state.originals == {}
    assert state.clean_exit


def test_hold_blocks_policy(host: SimulatedHost, tmp_path: Path) -> None:
    """Under hold the policy's actions are not applied; resume lets them through."""
    d = make(host, tmp_path)
    d.hold("maintenance")
    step(host, d, 3)
    assert host.domain(0).weight == 256
    assert d.status()["hold"] == {
        "held": True,
        "reason": "maintenance",
        "since": d.state.hold.since,
    }  # type: ignore[union-attr]
    d.resume()
    step(host, d)
    assert host.domain(0).weight == 2048


def test_manual_weight_wins_and_is_reapplied(host: SimulatedHost, tmp_path: Path) -> None:
    """A manual weight is kept against the policy, and restored if the host loses it."""
    d = make(host, tmp_path)
    d.set_weight("Domain-0", 512)
    step(host, d, 2)
    assert host.domain(0).weight == 512
    host.set_weight(0, 300)  # e.g. someone ran xl sched-credit by hand
    step(host, d)
    assert host.domain(0).weight == 512
    assert d.status()["domains"][0]["weight_source"] == "manual"
    d.unset("0")
    assert host.domain(0).weight == 256
    step(host, d)
    assert host.domain(0).weight == 2048


def test_bad_requests_change_nothing(host: SimulatedHost, tmp_path: Path) -> None:
    """Out-of-range weight, unknown domain, bad CPUs: refused with a code, host untouched."""
    d = make(host, tmp_path)
    with pytest.raises(ControlError) as e:
        d.set_weight("dom1", 0)
    assert e.value.code == "invalid"
    with pytest.raises(ControlError) as e:
        d.set_weight("nosuch", 300)
    assert e.value.code == "not_found"
    with pytest.raises(ControlError) as e:
        d.pin_dom0(frozenset({5}))
    assert e.value.code == "invalid"
    assert [x.weight for x in host.domains()] == [256, 256, 256]
    assert StateStore(tmp_path).load().originals == {}


def test_pin_dom0_and_unpin(host: SimulatedHost, tmp_path: Path) -> None:
    """dom0 on CPU 0, domUs on the others; unpin puts every original affinity back."""
    d = make(host, tmp_path)
    d.pin_dom0(frozenset({0}))
    assert [x.pinning for x in host.domains()] == [
        (frozenset({0}),),
        (frozenset({1}),),
        (frozenset({1}),),
    ]
    d.unpin_dom0()
    assert all(x.pinning == (frozenset({0, 1}),) for x in host.domains())


def test_restore_puts_everything_back_and_holds(host: SimulatedHost, tmp_path: Path) -> None:
    """restore: originals back, overrides dropped, automatic changes held."""
    d = make(host, tmp_path)
    step(host, d, 2)
    d.set_weight("dom1", 1000)
    d.pin_dom0(frozenset({1}))
    d.restore()
    assert [(x.weight, x.pinning) for x in host.domains()] == [(256, (frozenset({0, 1}),))] * 3
    step(host, d, 2)
    assert host.domain(0).weight == 256
    assert d.status()["hold"]["held"]


def test_crash_then_start_reconciles(host: SimulatedHost, tmp_path: Path) -> None:
    """A daemon that died without stop: the next start restores what the policy changed
    and keeps the manual overrides."""
    d = make(host, tmp_path)
    step(host, d, 2)
    d.set_weight("dom2", 700)
    assert host.domain(0).weight == 2048
    # crash: no stop(); a new daemon on the same host and state directory
    d2 = make(host, tmp_path)
    assert host.domain(0).weight == 256
    assert host.domain(2).weight == 700
    assert DOM0 not in d2.state.originals  # fully put back, so forgotten
    assert d2.state.originals[host.domain(2).uuid].weight == 256
    d2.stop()
    assert host.domain(2).weight == 256


def test_restore_on_exit_false_keeps_settings(host: SimulatedHost, tmp_path: Path) -> None:
    """With restore_on_exit = false the host keeps the settings and the originals stay known."""
    d = Daemon(
        SimulatorBackend(host, speed=None),
        Settings(state_dir=tmp_path, restore_on_exit=False),
        StateStore(tmp_path),
        policy=StaticDom0Policy(4096),
    )
    d.start()
    step(host, d, 2)
    d.stop()
    assert host.domain(0).weight == 4096
    assert StateStore(tmp_path).load().originals[DOM0].weight == 256


def test_domain_gone_between_ticks(host: SimulatedHost, tmp_path: Path) -> None:
    """A pinned-weight domain vanishing does not break the tick."""
    d = make(host, tmp_path)
    d.set_weight("dom2", 700)
    host._stop_domain("dom2")
    step(host, d, 2)
    assert [x["name"] for x in d.status()["domains"]] == ["Domain-0", "dom1"]


def test_simulator_backend_clock_follows_wall_time_times_speed(host: SimulatedHost) -> None:
    """Live mode: sync() advances the simulated clock by elapsed wall time times speed."""
    wall = [0]
    b = SimulatorBackend(host, speed=10.0, wall_ns=lambda: wall[0])
    start = b.clock_ns()
    wall[0] = 100_000_000  # 0.1 s of wall time
    b.sync()
    assert b.clock_ns() - start == 1_000_000_000
    assert b.get_pinning(DOM0) == Pinning((frozenset({0, 1}),))
