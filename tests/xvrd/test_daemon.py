"""The daemon on a simulated host in batch mode: ticks, overrides, hold, originals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulator.host import DOM0_UUID
from simulator.scenario import parse_scenario, report_scenario
from xvrd.analysis import Assessment, Finding
from xvrd.backends.base import Pinning
from xvrd.backends.simulated import SimulatorBackend
from xvrd.config import Settings
from xvrd.control.api import DOMAIN_FIELDS, STATUS_FIELDS, ControlError
from xvrd.control.render import render_status
from xvrd.daemon import Daemon
from xvrd.policy.adaptive import AdaptivePolicy
from xvrd.policy.base import Decision, PolicyContext, SetWeight
from xvrd.sampler import Observation
from xvrd.state import StateError


class WantsDom0At:
    """A policy that always asks for dom0 at one weight and reports one finding."""

    name = "test"

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.calls = 0

    def decide(
        self, observation: Observation, assessment: Assessment, context: PolicyContext, state: Any
    ) -> Decision:
        self.calls += 1
        dom0 = observation.dom0()
        assert dom0 is not None
        finding = Finding("unfairness", "test finding", {"jain": round(assessment.jain, 3)})
        return Decision(
            actions=(SetWeight(dom0.uuid, dom0.name, self.weight, "test wants it"),),
            findings=(finding,),
            state=(state or 0) + 1,
        )


def ticks(daemon: Daemon, backend: SimulatorBackend, n: int) -> None:
    for _ in range(n):
        backend.host.advance(2.0)
        daemon.tick()


def make_state_unwritable(settings: Settings) -> None:
    """A file where the state directory was: even root cannot write through that."""
    settings.state_dir.rename(settings.state_dir.with_name("moved-aside"))
    settings.state_dir.write_text("not a directory")


def weight(backend: SimulatorBackend, name: str) -> int:
    return next(d.weight for d in backend.host.domains() if d.name == name)


def test_policy_acts_only_on_complete_observations(
    settings: Settings, backend: SimulatorBackend
) -> None:
    policy = WantsDom0At(4096)
    daemon = Daemon(settings, backend, policy)
    daemon.tick()  # first sample: no rates
    assert policy.calls == 0
    assert weight(backend, "Domain-0") == 256
    ticks(daemon, backend, 1)
    assert policy.calls == 1
    assert weight(backend, "Domain-0") == 4096
    assert daemon.policy_state == 1
    status = daemon.status()
    assert status["findings"][0]["kind"] == "unfairness"
    assert status["actions"][-1]["new"] == "4096"
    assert status["domains"][0]["weight_source"] == "auto"


def test_status_document_has_every_documented_field(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend)
    assert set(daemon.status()) == set(STATUS_FIELDS)
    ticks(daemon, backend, 2)
    status = daemon.status()
    json.dumps(status)
    assert [d["name"] for d in status["domains"]] == ["Domain-0", "dom1", "dom2", "dom3", "dom4"]
    for d in status["domains"]:
        assert set(d) == set(DOMAIN_FIELDS)
        assert d["rx_mbps"] is not None
    assert status["aggregate_mbps"] > 800
    assert 0 < status["jain"] <= 1


def test_a_second_hold_keeps_the_first_ones_reason_and_time(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend)
    daemon.hold("kernel upgrade")
    since = daemon.status()["hold"]["since"]
    assert daemon.hold("") == f"already held since {since}: kernel upgrade"
    assert daemon.status()["hold"]["reason"] == "kernel upgrade"
    assert daemon.hold("disk swap") == "automatic changes held: disk swap"
    assert (daemon.status()["hold"]["reason"], daemon.status()["hold"]["since"]) == (
        "disk swap",
        since,
    )


def test_a_domain_is_found_by_its_uuid_in_either_case(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """UUIDs are case-insensitive; dmidecode in a guest prints them in capitals."""
    daemon = Daemon(settings, backend)
    daemon.set_weight(uuid_of(backend, "dom2").upper(), 300)
    assert weight(backend, "dom2") == 300


def test_hold_advise_and_overrides_block_the_policy(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend, WantsDom0At(4096))
    daemon.hold("maintenance")
    ticks(daemon, backend, 2)
    assert weight(backend, "Domain-0") == 256
    daemon.resume()
    daemon.set_weight("Domain-0", 512)
    ticks(daemon, backend, 2)
    assert weight(backend, "Domain-0") == 512  # the override wins
    daemon.unset("0")
    assert weight(backend, "Domain-0") == 256  # original back
    advise = Daemon(settings.model_copy(update={"mode": "advise"}), backend, WantsDom0At(4096))
    ticks(advise, backend, 2)
    assert weight(backend, "Domain-0") == 256


def test_override_is_persisted_and_reapplied_after_a_crash(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend)
    daemon.set_weight("dom2", 1024)
    saved = json.loads((settings.state_dir / "state.json").read_text())
    uuid = next(d.uuid for d in backend.host.domains() if d.name == "dom2")
    assert saved["overrides"][uuid] == {"name": "dom2", "weight": 1024}
    assert saved["originals"][uuid]["weight"] == 256
    # The daemon dies without restoring; someone resets the weight meanwhile.
    backend.host.set_weight(2, 300)
    again = Daemon(settings, backend)
    again.reconcile()
    assert weight(backend, "dom2") == 1024
    again.shutdown()
    # what xvrd found when it set the override again: the operator's 300, set by hand
    assert weight(backend, "dom2") == 300


def test_shutdown_restores_originals_unless_told_not_to(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend, WantsDom0At(8192))
    ticks(daemon, backend, 2)
    daemon.pin_dom0(frozenset({0}))
    assert backend.host.domain(0).pinning == (frozenset({0}),)
    assert backend.host.domain(1).pinning == (frozenset({1}),)
    restored = daemon.shutdown()
    assert {r.setting for r in restored} == {"weight", "pinning"}
    assert weight(backend, "Domain-0") == 256
    assert backend.host.domain(1).pinning == (frozenset({0, 1}),)

    keep = settings.model_copy(update={"restore_on_exit": False})
    backend._closed = False
    daemon = Daemon(keep, backend, WantsDom0At(8192))
    ticks(daemon, backend, 2)
    daemon.shutdown()
    assert weight(backend, "Domain-0") == 8192
    assert json.loads((keep.state_dir / "state.json").read_text())["originals"]


def test_a_stop_while_the_host_is_lost_connects_again_to_restore(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """libvirtd restarted (by a package upgrade, say): the stop does not wait out the
    reconnect backoff, and a host lost halfway through the restore is connected to again."""
    from xvrd.backends.base import BackendUnavailable

    clock = [0.0]
    daemon = Daemon(settings, backend, WantsDom0At(8192), monotonic=lambda: clock[0])
    ticks(daemon, backend, 2)
    daemon.set_weight("dom1", 2000)
    backend._closed = True
    daemon.tick()
    assert daemon.connected is False
    backend._closed = False  # back, but the backoff has not run out
    set_weight = backend.set_weight
    calls: list[int] = []

    def lost_at_the_first(uuid: str, weight: int) -> None:
        calls.append(weight)
        if len(calls) == 1:
            raise BackendUnavailable("gone again")
        set_weight(uuid, weight)

    mocker.patch.object(backend, "set_weight", side_effect=lost_at_the_first)
    restored = daemon.shutdown()
    assert calls == [256, 256, 256]
    assert {(r.domain, r.new) for r in restored} == {("Domain-0", "256"), ("dom1", "256")}
    backend._closed = False
    assert (weight(backend, "Domain-0"), weight(backend, "dom1")) == (256, 256)
    assert not json.loads((settings.state_dir / "state.json").read_text())["originals"]


def test_a_stop_with_the_host_unreachable_keeps_the_originals(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend, WantsDom0At(8192))
    ticks(daemon, backend, 2)
    backend._closed = True
    assert daemon.shutdown() == []
    backend._closed = False
    assert weight(backend, "Domain-0") == 8192
    # recorded for the next start, which puts it back at its stop
    again = Daemon(settings, backend)
    again.reconcile()
    again.shutdown()
    assert weight(backend, "Domain-0") == 256


def test_restore_command_puts_everything_back_and_holds(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend, WantsDom0At(4096))
    ticks(daemon, backend, 2)
    daemon.set_weight("dom1", 2000)
    message = daemon.restore()
    assert "restored 2 setting" in message
    assert weight(backend, "Domain-0") == 256
    assert weight(backend, "dom1") == 256
    status = daemon.status()
    assert status["hold"]["held"] is True
    ticks(daemon, backend, 2)
    assert weight(backend, "Domain-0") == 256


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda d: d.set_weight("nosuch", 300), "not_found"),
        (lambda d: d.set_weight("dom1", 0), "invalid"),
        (lambda d: d.set_weight("dom1", 65536), "invalid"),
        (lambda d: d.unset("dom1"), "not_found"),
        (lambda d: d.pin_dom0(frozenset({5})), "invalid"),
        (lambda d: d.pin_dom0(frozenset({0, 1})), "invalid"),
        (lambda d: d.unpin_dom0(), "not_found"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    settings: Settings, backend: SimulatorBackend, call: Any, code: str
) -> None:
    daemon = Daemon(settings, backend)
    before = [(d.weight, d.pinning) for d in backend.host.domains()]
    with pytest.raises(ControlError) as info:
        call(daemon)
    assert info.value.code == code
    assert [(d.weight, d.pinning) for d in backend.host.domains()] == before
    assert (
        not (settings.state_dir / "state.json").exists()
        or not json.loads((settings.state_dir / "state.json").read_text())["overrides"]
    )


def test_unreachable_host_is_reported_and_reconnected(
    settings: Settings, backend: SimulatorBackend
) -> None:
    clock = [0.0]
    daemon = Daemon(settings, backend, monotonic=lambda: clock[0])
    ticks(daemon, backend, 1)
    backend._closed = True  # the host goes away
    daemon.tick()
    status = daemon.status()
    assert status["backend"]["connected"] is False
    assert "closed" in status["backend"]["last_error"]
    with pytest.raises(ControlError) as info:
        daemon.set_weight("dom1", 300)
    assert info.value.code == "unavailable"
    backend._closed = False
    daemon.tick()  # too early: backoff
    assert daemon.connected is False
    clock[0] += 1.5
    daemon.tick()
    assert daemon.connected is True


def test_corrupt_state_file_stops_the_start(settings: Settings, backend: SimulatorBackend) -> None:
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "state.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(StateError, match="move it aside"):
        Daemon(settings, backend)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"originals": {DOM0_UUID: {"name": "Domain-0", "weight": -5}}}, "weight: Input should"),
        ({"overrides": {DOM0_UUID: {"name": "Domain-0", "weight": True}}}, "valid integer"),
        ({"overrides": {DOM0_UUID: {"name": "Domain-0", "weight": "300"}}}, "(got '300')"),
        ({"dom0_pin": []}, "dom0_pin: List should have at least 1 item"),
        ({"version": "1"}, "version: Input should be a valid integer"),
    ],
)
def test_a_hand_edited_state_value_stops_the_start_naming_it(
    settings: Settings, backend: SimulatorBackend, entry: dict[str, Any], message: str
) -> None:
    """Nothing converted (true is not a weight of 1) and nothing out of any host's range
    (an original of -5 could never be put back): the start stops, naming the field."""
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "state.json").write_text(json.dumps({"version": 1, **entry}))
    with pytest.raises(StateError, match="move it aside") as info:
        Daemon(settings, backend)
    assert message in str(info.value)
    assert weight(backend, "Domain-0") == 256


def test_a_saved_weight_outside_this_hosts_range_is_dropped_at_start(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """An override saved on a host with a wider range (QEMU's cpu_shares): dropped with a
    warning, as a dom0 pinning that no longer fits is, rather than stopping every start."""
    settings.state_dir.mkdir(parents=True)
    saved = {"version": 1, "overrides": {DOM0_UUID: {"name": "Domain-0", "weight": 100000}}}
    (settings.state_dir / "state.json").write_text(json.dumps(saved))
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    assert weight(backend, "Domain-0") == 256
    assert not daemon.state.overrides
    assert json.loads((settings.state_dir / "state.json").read_text())["overrides"] == {}


def test_state_file_is_replaced_atomically(settings: Settings, backend: SimulatorBackend) -> None:
    daemon = Daemon(settings, backend)
    daemon.hold("x")
    daemon.resume()
    assert sorted(p.name for p in Path(settings.state_dir).iterdir()) == ["state.json"]


def test_pinning_override_survives_restart(settings: Settings, backend: SimulatorBackend) -> None:
    Daemon(settings, backend).pin_dom0(frozenset({1}))
    backend.host.set_pinning(0, [frozenset({0, 1})])
    again = Daemon(settings, backend)
    again.reconcile()
    assert backend.host.domain(0).pinning == (frozenset({1}),)
    assert again.status()["dom0_pin"] == [1]
    again.unpin_dom0()
    assert backend.host.domain(0).pinning == (frozenset({0, 1}),)
    assert Pinning((frozenset({0, 1}),)) == backend.get_pinning(backend.host.domain(2).uuid)


@pytest.mark.usefixtures("default_logging")
def test_a_saved_dom0_pinning_that_no_longer_fits_is_dropped_at_start(settings: Settings) -> None:
    """dom0 pinned to CPU 2 of four; the host comes back with two CPUs. The override
    cannot hold: it is dropped with a warning rather than stopping every start."""
    from structlog.testing import capture_logs

    four = SimulatorBackend.from_scenario(report_scenario("receive", n_domus=2, pcpus=4))
    Daemon(settings, four).pin_dom0(frozenset({2}))
    two = SimulatorBackend.from_scenario(report_scenario("receive", n_domus=2), speed=None)
    daemon = Daemon(settings, two)
    with capture_logs() as logs:
        daemon.reconcile()
    assert daemon.status()["dom0_pin"] is None
    assert two.host.domain(0).pinning == (frozenset({0, 1}),)
    [dropped] = [e for e in logs if e["event"].startswith("manual dom0 pinning dropped")]
    assert (dropped["log_level"], dropped["dom0_pin"], dropped["online"]) == ("warning", [2], "0-1")
    assert Daemon(settings, two).state.dom0_pin is None  # saved


def test_an_original_pinning_on_cpus_now_offline_goes_back_onto_the_online_ones(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """An original naming only CPUs that are offline now is put back as Xen treats such a
    vCPU: on every online CPU, instead of failing the unpin or the restore."""
    daemon = Daemon(settings, backend)
    daemon.pin_dom0(frozenset({0}))
    dom1, dom2 = (backend.host.domain(i).uuid for i in (1, 2))
    for uuid in (dom1, dom2):
        daemon.state.originals[uuid].pinning = [[5]]  # as if CPU 5 went offline since
    daemon.unpin_dom0()
    assert backend.host.domain(1).pinning == (frozenset({0, 1}),)
    daemon.actuator.set_pinning(dom2, "dom2", Pinning((frozenset({1}),)), "test")
    daemon.shutdown()
    assert backend.host.domain(2).pinning == (frozenset({0, 1}),)
    assert daemon.state.originals == {}


def test_status_shows_an_operator_change_at_once(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend)
    ticks(daemon, backend, 2)
    daemon.set_weight("dom3", 777)
    row = next(d for d in daemon.status()["domains"] if d["name"] == "dom3")
    assert row["weight"] == 777
    assert row["weight_source"] == "manual"


def test_a_simulated_host_is_measured_against_its_own_link(settings: Settings) -> None:
    """Not the config's link_mbps: a 100 Mb/s host carrying 100 Mb/s is no collapse."""
    from simulator.scenario import parse_scenario

    scenario = parse_scenario(
        {
            "name": "slow-link",
            "host": {"link_mbps": 100},
            "domains": [{"name": "dom", "count": 2, "workload": "receive"}],
        },
        "test",
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    daemon = Daemon(settings, backend, WantsDom0At(256))
    ticks(daemon, backend, 3)
    assert daemon.assessment is not None
    assert 0.9 < daemon.assessment.efficiency < 1.05  # full, give or take a sample's edge
    assert daemon.assessment.link_mbps < 100


def test_manual_dom0_pinning_holds_for_domus_that_join_later(settings: Settings) -> None:
    """pin-dom0 promises domUs kept off dom0's CPUs: a domU started after it is moved off
    them at the next tick, and removing a domU's manual weight does not put it back on."""
    from simulator.scenario import parse_scenario

    scenario = parse_scenario(
        {
            "name": "late-joiner",
            "domains": [
                {"name": "early", "count": 1, "workload": "receive"},
                {"name": "late", "count": 1, "workload": "receive", "start_s": 3},
            ],
        },
        "test",
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    daemon = Daemon(settings, backend)
    daemon.pin_dom0(frozenset({0}))
    ticks(daemon, backend, 2)
    late = next(d for d in backend.host.domains() if d.name == "late")
    assert late.pinning == (frozenset({1}),)
    daemon.set_weight("early", 512)
    assert "original weight back" in daemon.unset("early")
    early = next(d for d in backend.host.domains() if d.name == "early")
    assert early.pinning == (frozenset({1}),)
    assert backend.host.domain(0).pinning == (frozenset({0}),)


@pytest.mark.usefixtures("default_logging")
def test_advice_shows_the_current_value_and_is_logged_once_a_while(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """In advise mode every would-be change is in status, with the value it would replace,
    once however often it is given (the latest); the log has the first, then at most one
    per ADVICE_LOG_EVERY_S, counting the rest."""
    from structlog.testing import capture_logs

    from xvrd.actuator import ADVICE_LOG_EVERY_S

    clock = [0.0]
    advise = Daemon(
        settings.model_copy(update={"mode": "advise"}),
        backend,
        WantsDom0At(4096),
        monotonic=lambda: clock[0],
    )
    with capture_logs() as logs:
        for _ in range(4):
            ticks(advise, backend, 1)
            clock[0] += 2.0
        clock[0] += ADVICE_LOG_EVERY_S
        ticks(advise, backend, 1)
    actions = [a for a in advise.status()["actions"] if not a["applied"]]
    # given at 4 ticks (the first has no rates yet: the policy is not asked), shown once
    (action,) = actions
    assert (action["old"], action["new"]) == ("256", "4096")
    assert action["reason"].endswith("(advise mode)")
    logged = [e for e in logs if e["event"] == "change not applied"]
    assert [e["repeats_not_logged"] for e in logged] == [0, 2]
    assert weight(backend, "Domain-0") == 256


def test_a_state_write_failure_is_reported_and_errs_on_the_held_side(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """A state file that cannot be written: hold still stops automatic changes (unsaved),
    resume is refused (a restart would undo it), and set-weight names the failure."""
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    make_state_unwritable(settings)
    with pytest.raises(ControlError, match="held until the daemon stops, but not saved"):
        daemon.hold("disk trouble")
    assert daemon.status()["hold"]["held"]
    with pytest.raises(ControlError, match="still held: cannot write") as info:
        daemon.resume()
    assert info.value.code == "unavailable"
    assert daemon.status()["hold"]["held"]
    with pytest.raises(ControlError, match="cannot write"):
        daemon.set_weight("dom1", 512)


def test_one_domain_failing_does_not_stop_the_others_being_restored(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """A domain being torn down as the host stops (libxl cannot read it): the others still
    get their originals back at exit, and its original stays recorded for a later restore.
    The failure is faked: the simulated host has no half-destroyed domains."""
    from xvrd.backends.base import BackendError

    daemon = Daemon(settings, backend)
    daemon.reconcile()
    uuids = {d.name: d.uuid for d in backend.list_domains()}
    for name in ("dom1", "dom2", "dom3"):
        daemon.actuator.set_weight(uuids[name], name, 1024, "test")
    real = backend.get_sched

    def get_sched(uuid: str) -> Any:
        if uuid == uuids["dom1"]:
            raise BackendError("libxl_domain_info failed")
        return real(uuid)

    mocker.patch.object(backend, "get_sched", side_effect=get_sched)
    daemon.shutdown()
    assert [weight(backend, n) for n in ("dom1", "dom2", "dom3")] == [1024, 256, 256]
    saved = json.loads((settings.state_dir / "state.json").read_text())
    assert [o["name"] for o in saved["originals"].values()] == ["dom1"]


def test_no_change_is_made_without_its_original_on_disk(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    make_state_unwritable(settings)
    dom1 = next(d for d in backend.list_domains() if d.name == "dom1")
    with pytest.raises(StateError):
        daemon.actuator.set_weight(dom1.uuid, "dom1", 1024, "test")
    assert weight(backend, "dom1") == 256
    assert dom1.uuid not in daemon.state.originals


def test_a_domain_the_host_cannot_read_is_named_in_status_until_it_reads_again(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """Left out of the table and the figures, a running domain the host cannot read (a
    libxl lock held by a save, faked here) is named in status with the host's error."""
    from xvrd.backends.base import BackendError

    daemon = Daemon(settings, backend)
    ticks(daemon, backend, 2)
    dom2 = next(d for d in backend.list_domains() if d.name == "dom2")
    read = backend.read_counters

    def failing(uuid: str) -> Any:
        if uuid == dom2.uuid:
            raise BackendError("cannot acquire state change lock")
        return read(uuid)

    mocker.patch.object(backend, "read_counters", side_effect=failing)
    ticks(daemon, backend, 1)
    status = daemon.status()
    assert "dom2" not in [d["name"] for d in status["domains"]]
    assert status["unreadable"] == [
        {
            "name": "dom2",
            "domid": dom2.domid,
            "uuid": dom2.uuid,
            "error": "cannot acquire state change lock",
        }
    ]
    assert "dom2 (ID 2): cannot acquire state change lock" in render_status(status)
    mocker.patch.object(backend, "read_counters", side_effect=read)
    ticks(daemon, backend, 1)
    status = daemon.status()
    assert status["unreadable"] == []
    dom2_row = next(d for d in status["domains"] if d["name"] == "dom2")
    assert dom2_row["rx_mbps"] is not None  # rates resume across the gap


def test_a_host_error_on_one_policy_action_does_not_fail_the_tick(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """A change the host refuses (a read-only connection, say; faked here) is logged as not
    applied; the tick completes and the host is reported connected."""
    from xvrd.backends.base import BackendError

    daemon = Daemon(settings, backend, WantsDom0At(4096))
    mocker.patch.object(backend, "set_weight", side_effect=BackendError("access denied"))
    ticks(daemon, backend, 2)
    assert daemon.ticks == 2
    assert daemon.connected
    assert weight(backend, "Domain-0") == 256


def test_originals_from_before_a_host_reboot_are_forgotten(settings: Settings) -> None:
    """xvrd's settings are live only: a host reboot put the originals back, and restoring a
    previous boot's (dom0 pinned to CPUs numbered for that boot) would do harm. The manual
    weight, the operator's intent, is applied again."""
    scenario = report_scenario("receive", n_domus=2)
    first = SimulatorBackend.from_scenario(scenario, speed=None)
    crashed = Daemon(settings, first)
    crashed.reconcile()
    crashed.set_weight("dom1", 512)
    crashed.actuator.set_weight(DOM0_UUID, "Domain-0", 2048, "test")
    assert len(crashed.state.originals) == 2  # then the host reboots, xvrd never stopped

    rebooted = SimulatorBackend.from_scenario(scenario, speed=None)
    daemon = Daemon(settings, rebooted)
    daemon.reconcile()
    assert set(daemon.state.originals) == {rebooted.host.domain(1).uuid}  # the override's
    assert weight(rebooted, "dom1") == 512
    daemon.shutdown()
    assert [weight(rebooted, n) for n in ("Domain-0", "dom1")] == [256, 256]

    same_host = SimulatorBackend(rebooted.host, speed=None)
    same_boot = Daemon(settings, same_host)  # a restart without a reboot keeps them
    same_boot.set_weight("dom1", 768)
    again = Daemon(settings, same_host)
    again.reconcile()
    assert set(again.state.originals) == {rebooted.host.domain(1).uuid}
    assert again.state.originals[rebooted.host.domain(1).uuid].weight == 256


def test_a_restart_forgets_only_the_originals_of_domains_that_are_gone(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """A domain the listing left out (libvirt could not read it just then) keeps its
    original; one the host says is not running loses it."""
    crashed = Daemon(settings, backend)
    crashed.reconcile()
    dom1 = backend.host.domain(1).uuid
    crashed.actuator.set_weight(dom1, "dom1", 512, "the crashed run's")
    gone = "00000000-0000-4000-8000-00000000dead"
    crashed.state.originals[gone] = crashed.state.originals[dom1].model_copy(
        update={"name": "destroyed"}
    )
    crashed.store.save(crashed.state)

    again = Daemon(settings, backend)
    listing = backend.list_domains()
    mocker.patch.object(
        backend, "list_domains", side_effect=[[d for d in listing if d.name != "dom1"]]
    )
    again.reconcile()
    assert set(again.state.originals) == {dom1}
    mocker.stopall()
    again.shutdown()
    assert weight(backend, "dom1") == 256


def uuid_of(backend: SimulatorBackend, name: str) -> str:
    return next(d.uuid for d in backend.host.domains() if d.name == name)


def test_settings_changed_by_hand_since_xvrd_set_them_are_left_at_stop(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """Put back only what xvrd changed and the host still has as xvrd set it: a weight on a
    domU xvrd only pinned, or one an operator set over xvrd's, or a pinning set by hand, is
    the operator's."""
    daemon = Daemon(settings, backend)
    daemon.actuator.set_weight(DOM0_UUID, "Domain-0", 4096, "the policy's, say")
    daemon.pin_dom0(frozenset({0}))
    host = backend.host
    dom1, dom2, dom3 = (host.domain(i).domid for i in (1, 2, 3))
    host.set_weight(dom1, 1024)  # xl sched-credit -d dom1 -w 1024: xvrd only pinned dom1
    host.set_weight(0, 512)  # over xvrd's 4096
    host.set_pinning(dom2, [frozenset({0, 1})])  # xl vcpu-pin: over xvrd's pinning
    ticks(daemon, backend, 1)
    sources = {d["name"]: d["weight_source"] for d in daemon.status()["domains"]}
    assert (sources["dom1"], sources["Domain-0"]) == ("default", "default")
    host.set_weight(0, 4096)  # the operator came round to xvrd's: xvrd's again
    ticks(daemon, backend, 1)
    assert daemon.status()["domains"][0]["weight_source"] == "auto"
    host.set_weight(0, 512)
    host.set_pinning(dom2, [frozenset({0, 1})])
    daemon.state.dom0_pin = None  # the manual pinning would hold dom2 off CPU 0 again
    daemon.shutdown()
    assert [weight(backend, n) for n in ("Domain-0", "dom1")] == [512, 1024]
    assert host.domain(dom2).pinning == (frozenset({0, 1}),)
    assert host.domain(dom3).pinning == (frozenset({0, 1}),)  # xvrd's: put back
    assert host.domain(0).pinning == (frozenset({0, 1}),)


def test_a_domu_weight_set_by_hand_after_a_crash_is_not_taken_as_a_raise(
    settings: Settings, backend: SimulatorBackend
) -> None:
    crashed = Daemon(settings, backend, AdaptivePolicy())
    crashed.reconcile()
    uuid = uuid_of(backend, "dom3")
    crashed.actuator.set_weight(uuid, "dom3", 512, "crowded out: the crashed run's raise")
    backend.host.set_weight(backend.host.domain(3).domid, 1024)  # then the operator's
    again = Daemon(settings, backend, AdaptivePolicy())
    again.reconcile()
    for _ in range(30):
        ticks(again, backend, 1)
        assert weight(backend, "dom3") == 1024


def test_a_change_the_host_refused_leaves_xvrds_earlier_one_to_put_back(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    from xvrd.backends.base import BackendError

    daemon = Daemon(settings, backend)
    daemon.actuator.set_weight(DOM0_UUID, "Domain-0", 2048, "test")
    mocker.patch.object(backend, "set_weight", side_effect=BackendError("refused"))
    with pytest.raises(BackendError):
        daemon.actuator.set_weight(DOM0_UUID, "Domain-0", 4096, "test")
    mocker.stopall()
    # the host may have made the change before failing: both are xvrd's
    assert daemon.state.originals[DOM0_UUID].weights_set == [2048, 4096]
    daemon.shutdown()
    assert weight(backend, "Domain-0") == 256


def test_a_change_the_host_made_but_reported_failed_is_still_put_back(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """The connection dropped after libvirtd applied it: xvrd's value is on the host."""
    from xvrd.backends.base import BackendUnavailable

    daemon = Daemon(settings, backend)
    set_weight = backend.set_weight

    def applied_then_lost(uuid: str, weight: int) -> None:
        set_weight(uuid, weight)
        raise BackendUnavailable("connection reset")

    mocker.patch.object(backend, "set_weight", side_effect=applied_then_lost)
    with pytest.raises(BackendUnavailable):
        daemon.actuator.set_weight(uuid_of(backend, "dom1"), "dom1", 900, "test")
    mocker.stopall()
    daemon.shutdown()
    assert weight(backend, "dom1") == 256


def test_a_crash_between_noting_and_setting_leaves_nothing_of_xvrds(
    settings: Settings, backend: SimulatorBackend
) -> None:
    crashed = Daemon(settings, backend)
    crashed.actuator.set_weight(DOM0_UUID, "Domain-0", 512, "test")
    crashed.actuator._note(DOM0_UUID, "Domain-0", weight=(512, 768))  # then it died
    again = Daemon(settings, backend)
    again.reconcile()
    again.shutdown()
    assert weight(backend, "Domain-0") == 256


def test_a_weight_set_by_hand_is_what_xvrd_puts_back_after_setting_over_it(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend)
    dom1 = uuid_of(backend, "dom1")
    daemon.actuator.set_weight(dom1, "dom1", 512, "the policy's")
    backend.host.set_weight(backend.host.domain(1).domid, 700)  # by hand
    daemon.actuator.set_weight(dom1, "dom1", 900, "the policy's again")
    daemon.shutdown()
    assert weight(backend, "dom1") == 700

    backend._closed = False
    daemon = Daemon(settings, backend)
    daemon.actuator.set_weight(dom1, "dom1", 512, "the policy's")
    backend.host.set_weight(backend.host.domain(1).domid, 800)  # by hand, then the same
    daemon.set_weight("dom1", 800)  # as an override: xvrd's from now on
    assert "original weight back" in daemon.unset("dom1")
    assert weight(backend, "dom1") == 800


def test_a_version_1_original_is_not_taken_for_xvrds_once_read(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """A change by hand during the new run is the operator's, as for any original."""
    settings.state_dir.mkdir(parents=True)
    v1 = {"version": 1, "originals": {uuid_of(backend, "dom1"): {"name": "dom1", "weight": 256}}}
    (settings.state_dir / "state.json").write_text(json.dumps(v1))
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    backend.host.set_weight(backend.host.domain(1).domid, 700)  # by hand
    ticks(daemon, backend, 2)
    assert daemon.status()["domains"][1]["weight_source"] == "default"
    daemon.shutdown()
    assert weight(backend, "dom1") == 700


def test_an_older_value_of_xvrds_set_by_hand_is_the_operators(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """A trial and its revert: the trial's weight set again by hand is not xvrd's."""
    daemon = Daemon(settings, backend)
    daemon.actuator.set_weight(DOM0_UUID, "Domain-0", 900, "trial")
    daemon.actuator.set_weight(DOM0_UUID, "Domain-0", 256, "trial reverted")
    backend.host.set_weight(0, 900)  # by hand
    daemon.shutdown()
    assert weight(backend, "Domain-0") == 900


BOTH_CPUS = frozenset({0, 1})
OFF_DOM0 = Pinning((frozenset({1}),) * 2)


def two_vcpu_dom1_pinned(
    daemon: Daemon, backend: SimulatorBackend, mocker: Any
) -> tuple[str, dict[str, Pinning]]:
    """dom1 as a backend reporting 2 vCPUs (the simulated ones have one), unpinned, then
    pinned off dom0 by xvrd: its UUID and the host's pinning, for a test to change."""
    dom1 = uuid_of(backend, "dom1")
    host = {"pinning": Pinning((BOTH_CPUS, BOTH_CPUS))}
    mocker.patch.object(backend, "get_pinning", side_effect=lambda _uuid: host["pinning"])
    mocker.patch.object(backend, "set_pinning", side_effect=lambda _uuid, p: host.update(pinning=p))
    daemon.actuator.set_pinning(dom1, "dom1", OFF_DOM0, "off dom0")
    return dom1, host


def test_one_vcpu_pinned_by_hand_keeps_its_affinity_and_the_others_go_back(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    daemon = Daemon(settings, backend)
    dom1, host = two_vcpu_dom1_pinned(daemon, backend, mocker)
    host["pinning"] = Pinning((frozenset({1}), frozenset({0})))  # xl vcpu-pin dom1 1 0
    daemon.actuator.set_pinning(dom1, "dom1", OFF_DOM0, "again")
    host["pinning"] = Pinning((frozenset({1}), frozenset({0})))  # and once more, by hand
    daemon.restore()
    assert host["pinning"] == Pinning((BOTH_CPUS, frozenset({0})))


def test_a_restore_cut_short_is_finished_by_the_next(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """vCPU by vCPU: one already put back counts as xvrd's to finish, not as set by hand."""
    daemon = Daemon(settings, backend)
    _, host = two_vcpu_dom1_pinned(daemon, backend, mocker)
    host["pinning"] = Pinning((BOTH_CPUS, frozenset({1})))  # vCPU 0 put back, then a failure
    assert "restored 1 setting" in daemon.restore()
    assert host["pinning"] == Pinning((BOTH_CPUS, BOTH_CPUS))


def test_unpinning_dom0_leaves_a_domu_pinned_by_hand_since(settings: Settings) -> None:
    backend = SimulatorBackend.from_scenario(
        report_scenario("receive", n_domus=2, pcpus=4), speed=None
    )
    daemon = Daemon(settings, backend)
    daemon.pin_dom0(frozenset({0}))
    backend.host.set_pinning(backend.host.domain(2).domid, [frozenset({3})])  # by hand
    daemon.unpin_dom0()
    everything = frozenset({0, 1, 2, 3})
    assert backend.host.domain(1).pinning == (everything,)
    assert backend.host.domain(2).pinning == (frozenset({3}),)
    assert backend.host.domain(0).pinning == (everything,)


def test_a_vcpu_added_since_has_its_affinity_then_recorded_as_its_original() -> None:
    """xl vcpu-set after xvrd recorded the domain: the new vCPU's affinity before xvrd
    pins it is what goes back, not xvrd's."""
    from xvrd.actuator import _noted_pinning
    from xvrd.state import Original

    both = frozenset({0, 1})
    recorded = Original(name="d", weight=256, pinning=[[0, 1]])
    noted = _noted_pinning(recorded, Pinning((both, both)), Pinning((frozenset({1}),) * 2))
    assert noted.pinning == [[0, 1], [0, 1]]
    assert noted.pinnings_set == [[[0, 1], [0, 1]], [[1], [1]]]  # before, and xvrd's


def test_an_original_pinning_is_fitted_to_the_vcpus_the_domain_has_now(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """A domU with fewer vCPUs than when its original was recorded (`xl vcpu-set`) still
    gets its affinity back, for the vCPUs it has."""
    daemon = Daemon(settings, backend)
    daemon.pin_dom0(frozenset({0}))
    daemon.state.dom0_pin = None
    uuid = uuid_of(backend, "dom1")
    recorded = daemon.state.originals[uuid]
    assert recorded.pinning == [[0, 1]]
    daemon.state.originals[uuid] = recorded.model_copy(
        update={"pinning": [[0, 1], [0]], "pinning_set": [[1], [1]]}
    )
    assert "restored" in daemon.restore()
    assert backend.host.domain(1).pinning == (frozenset({0, 1}),)
    assert uuid not in daemon.state.originals


def test_what_the_host_made_of_a_pinning_is_what_a_stop_recognises_as_xvrds(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """A host may narrow an affinity (QEMU's cpuset does): a stop still puts it back."""
    set_pinning = backend.set_pinning
    narrowed = frozenset({1})

    def narrowing(uuid: str, pinning: Pinning) -> None:
        set_pinning(uuid, Pinning(tuple(c & narrowed or c for c in pinning.vcpus)))

    mocker.patch.object(backend, "set_pinning", side_effect=narrowing)
    daemon = Daemon(settings, backend)
    uuid = uuid_of(backend, "dom1")
    daemon.actuator.set_pinning(uuid, "dom1", Pinning((frozenset({0}),)), "test")
    daemon.actuator.set_pinning(uuid, "dom1", Pinning((frozenset({0, 1}),)), "test")
    assert backend.host.domain(1).pinning == (narrowed,)
    mocker.stopall()
    daemon.shutdown()
    assert backend.host.domain(1).pinning == (frozenset({0, 1}),)


def test_a_state_file_of_version_1_is_read_and_its_changes_put_back(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """Written before xvrd noted what it set, by a run that crashed: what differs from the
    originals is taken as that run's, as it would have restored it (read at the stop, so a
    domain unreadable at the start is not lost)."""
    dom1 = uuid_of(backend, "dom1")
    settings.state_dir.mkdir(parents=True)
    unpinned = [[0, 1]]
    v1 = {
        "version": 1,
        "boot_id": None,
        "originals": {
            DOM0_UUID: {"name": "Domain-0", "weight": 256, "cap": 0, "pinning": unpinned},
            dom1: {"name": "dom1", "weight": 256, "cap": 0, "pinning": unpinned},
        },
    }
    (settings.state_dir / "state.json").write_text(json.dumps(v1))
    backend.host.set_weight(0, 3000)
    backend.host.set_pinning(backend.host.domain(1).domid, [frozenset({1})])
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    saved = json.loads((settings.state_dir / "state.json").read_text())
    assert saved["version"] == 2
    # what the host has now that differs is taken as xvrd's; from here on, noted
    assert saved["originals"][DOM0_UUID]["weights_set"] == [3000]
    assert saved["originals"][dom1]["pinnings_set"] == [[[1]]]
    assert saved["originals"][dom1]["legacy"] is False
    daemon.shutdown()
    assert weight(backend, "Domain-0") == 256
    assert backend.host.domain(1).pinning == (frozenset({0, 1}),)


def test_a_domu_raise_left_by_a_crashed_run_is_given_back(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """The adaptive policy keeps its record of the domUs it raised in memory; the state
    file's originals are what a restart has, and enough to give the raise back."""
    crashed = Daemon(settings, backend, AdaptivePolicy())
    crashed.reconcile()
    uuid = next(d.uuid for d in backend.host.domains() if d.name == "dom3")
    crashed.actuator.set_weight(uuid, "dom3", 512, "crowded out: the crashed run's raise")
    again = Daemon(settings, backend, AdaptivePolicy())  # its memory of the raise is gone
    again.reconcile()
    assert weight(backend, "dom3") == 512
    ticks(again, backend, 20)
    assert weight(backend, "dom3") == 256
    gave_back = [
        a for a in again.status()["actions"] if a["domain"] == "dom3" and a["setting"] == "weight"
    ]
    assert gave_back[-1]["reason"].startswith("give CPU back")


def test_an_override_command_that_cannot_save_changes_nothing(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """set-weight, unset, pin-dom0 and unpin-dom0 each save what they do before touching
    the host: when the save fails, the host, the overrides and the status are as before the
    command, which reports the failure. restore errs on the restored side, as hold does."""
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    daemon.set_weight("dom1", 300)
    daemon.pin_dom0(frozenset({0}))
    make_state_unwritable(settings)

    def host() -> dict[str, tuple[int, tuple[frozenset[int], ...]]]:
        return {d.name: (d.weight, d.pinning) for d in backend.host.domains()}

    before = (host(), daemon.state.model_dump())
    commands = (
        lambda: daemon.set_weight("dom1", 500),
        lambda: daemon.set_weight("dom2", 500),
        lambda: daemon.unset("dom1"),
        daemon.unpin_dom0,
        lambda: daemon.pin_dom0(frozenset({1})),
    )
    for command in commands:
        with pytest.raises(ControlError, match="cannot write") as info:
            command()
        assert info.value.code == "unavailable"
        assert (host(), daemon.state.model_dump()) == before
    with pytest.raises(ControlError, match="restored and held until the daemon stops, but not"):
        daemon.restore()
    assert host() == {d.name: (256, (frozenset({0, 1}),)) for d in backend.host.domains()}
    assert daemon.status()["hold"]["held"]
    assert not daemon.state.overrides


def test_a_domain_is_found_by_name_before_uuid_and_id(settings: Settings) -> None:
    """ "2" is the domain named 2, not domain ID 2, whatever order the host lists them in;
    an ID is ASCII digits (not another script's)."""
    scenario = parse_scenario(
        {"domains": [{"name": "2", "workload": "idle"}, {"name": "web", "workload": "idle"}]}
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    ids = {d.name: d.domid for d in backend.list_domains()}
    assert ids == {"Domain-0": 0, "2": 1, "web": 2}
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    daemon.set_weight("2", 300)
    daemon.set_weight("0", 700)
    with pytest.raises(ControlError, match="no running domain named"):
        daemon.set_weight("\u0661", 400)  # an Arabic-Indic 1
    assert (weight(backend, "2"), weight(backend, "web"), weight(backend, "Domain-0")) == (
        300,
        256,
        700,
    )


def test_a_manual_weight_holds_when_the_domain_comes_back_without_it(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """A domU rebooted takes its configured weight again (here: set behind xvrd's back, as
    the reboot does): the next tick puts the manual weight back, so status never shows
    'manual' over a weight that is not."""
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    daemon.set_weight("dom2", 999)
    uuid = next(d.uuid for d in backend.list_domains() if d.name == "dom2")
    backend.set_weight(uuid, 256)
    ticks(daemon, backend, 1)
    assert weight(backend, "dom2") == 999
    row = next(d for d in daemon.status()["domains"] if d["name"] == "dom2")
    assert (row["weight"], row["weight_source"]) == (999, "manual")


def test_a_host_lost_while_applying_ends_the_tick_quietly(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """libvirtd going away between the policy's change and the re-read of the settings: the
    tick records the loss and returns (it never raises), and status says unreachable. The
    loss is faked: the simulated host cannot go away."""
    from xvrd.backends.base import BackendUnavailable

    daemon = Daemon(settings, backend, WantsDom0At(1024))
    daemon.reconcile()
    down = False
    real_get_sched = backend.get_sched

    def set_weight(_uuid: str, _weight: int) -> None:
        nonlocal down
        down = True
        raise BackendUnavailable("libvirtd went away")

    def get_sched(uuid: str) -> Any:
        if down:
            raise BackendUnavailable("libvirtd went away")
        return real_get_sched(uuid)

    mocker.patch.object(backend, "set_weight", side_effect=set_weight)
    mocker.patch.object(backend, "get_sched", side_effect=get_sched)
    ticks(daemon, backend, 2)
    assert down
    assert not daemon.connected
    assert "libvirtd went away" in daemon.status()["backend"]["last_error"]


def test_stopping_leaves_a_cap_the_operator_set_meanwhile(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """xvrd changes weights and pinning, never caps: a cap an operator set while it ran
    (with xl) stays when it stops, and the weight it changed goes back."""
    daemon = Daemon(settings, backend)
    daemon.reconcile()
    dom1 = next(d for d in backend.list_domains() if d.name == "dom1")
    daemon.actuator.set_weight(dom1.uuid, "dom1", 1024, "test")
    backend.set_cap(dom1.uuid, 50)
    daemon.shutdown()
    after = next(d for d in backend.host.domains() if d.name == "dom1")
    assert (after.weight, after.cap) == (256, 50)


def test_a_host_that_fails_right_after_each_reconnect_is_retried_ever_later(
    settings: Settings, backend: SimulatorBackend, mocker: Any
) -> None:
    """Reconnecting works but the next call fails (a flapping libvirtd): the delay doubles
    each time up to a minute, rather than starting again at 1 s. Faked: the simulated host
    cannot flap."""
    from xvrd.backends.base import BackendUnavailable

    clock = [0.0]
    daemon = Daemon(settings, backend, monotonic=lambda: clock[0])
    daemon.reconcile()
    mocker.patch.object(backend, "list_domains", side_effect=BackendUnavailable("flapping"))
    delays = []
    for _ in range(8):
        daemon.tick()
        delays.append(daemon._retry_delay)
        clock[0] += daemon._retry_delay
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_a_dom0_pinning_the_host_booted_with_is_left_alone(settings: Settings) -> None:
    """dom0 pinned at boot (Xen's dom0_vcpus_pin), CPU-bound domUs, nothing wrong: the
    policy neither moves the domUs off dom0's pCPU nor 'gives CPU back' by unpinning dom0.
    Both happened: the upkeep and the give-back took any pinning of dom0 for their own."""
    scenario = parse_scenario(
        {
            "host": {"pcpus": 4, "dom0_pinning": [0]},
            "domains": [{"name": "burn", "count": 4, "workload": "burn"}],
        }
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    daemon = Daemon(settings, backend, AdaptivePolicy())
    daemon.reconcile()
    ticks(daemon, backend, 25)
    assert not [r for r in daemon.actuator.history if r.setting == "pinning"]
    pinning = {d.name: d.pinning for d in backend.host.domains()}
    assert pinning["Domain-0"] == (frozenset({0}),)
    assert pinning["burn1"] == (frozenset({0, 1, 2, 3}),)


def test_removing_dom0s_manual_weight_leaves_the_policys_pinning(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """unset puts back the weight only: dom0 stays pinned where the policy put it, beside
    the domUs it keeps off that pCPU, and the stop puts back the affinities as well."""
    daemon = Daemon(settings, backend)
    own, rest = Pinning((frozenset({0}),)), Pinning((frozenset({1}),))
    daemon.actuator.set_pinning(DOM0_UUID, "Domain-0", own, "the policy's pin")
    daemon.actuator.set_pinning(uuid_of(backend, "dom1"), "dom1", rest, "the policy's pin")
    daemon.set_weight("Domain-0", 4096)
    assert daemon.unset("Domain-0") == "Domain-0: manual weight removed, original weight back"
    assert backend.host.domain(0).weight == 256
    assert backend.host.domain(0).pinning == own.vcpus
    daemon.shutdown()
    assert backend.host.domain(0).pinning == (frozenset({0, 1}),)
    assert next(d for d in backend.host.domains() if d.name == "dom1").pinning == (
        frozenset({0, 1}),
    )


def test_the_policy_is_told_which_affinities_xvrd_set(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """What giving back the pin may put back: dom0's and dom1's affinities, which xvrd set,
    and not dom2's, which the operator set over xvrd's."""
    daemon = Daemon(settings, backend)
    own, rest = Pinning((frozenset({0}),)), Pinning((frozenset({1}),))
    for uuid, name, pinning in (
        (DOM0_UUID, "Domain-0", own),
        (uuid_of(backend, "dom1"), "dom1", rest),
        (uuid_of(backend, "dom2"), "dom2", rest),
    ):
        daemon.actuator.set_pinning(uuid, name, pinning, "the policy's pin")
    backend.host.set_pinning(backend.host.domain(2).domid, [frozenset({0})])  # by hand
    ticks(daemon, backend, 1)
    assert daemon.observation is not None
    context = daemon._context(daemon.observation)
    everywhere = Pinning((frozenset({0, 1}),))
    dom1 = uuid_of(backend, "dom1")
    assert context.original_pinnings == {DOM0_UUID: everywhere, dom1: everywhere}


def test_pin_dom0_takes_only_dom0s_cpus_from_a_domu_the_operator_pinned(
    settings: Settings,
) -> None:
    """Four pCPUs: a pinned by hand to 0-1, b to 2, c unpinned. pin-dom0 0 leaves a on 1
    and b on 2, and moves c to 1-3; unpin-dom0 puts back what it changed."""
    scenario = parse_scenario(
        {
            "name": "pinned-by-hand",
            "host": {"pcpus": 4},
            "domains": [
                {"name": "a", "workload": "receive", "pinning": [0, 1]},
                {"name": "b", "workload": "receive", "pinning": [2]},
                {"name": "c", "workload": "receive"},
            ],
        },
        "test",
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    daemon = Daemon(settings, backend)

    def pins() -> dict[str, frozenset[int]]:
        return {d.name: d.pinning[0] for d in backend.host.domains()}

    before = pins()
    daemon.pin_dom0(frozenset({0}))
    assert pins() == {
        "Domain-0": {0}, "a": {1}, "b": {2}, "c": {1, 2, 3}
    }  # fmt: skip
    ticks(daemon, backend, 2)  # held as it is: nothing on dom0's CPU
    assert pins()["b"] == {2}
    daemon.unpin_dom0()
    assert pins() == before


@pytest.mark.usefixtures("default_logging")
def test_originals_forgotten_for_a_reboot_are_counted_as_forgotten(
    settings: Settings, backend: SimulatorBackend
) -> None:
    from structlog.testing import capture_logs

    settings.state_dir.mkdir(parents=True)
    saved = {
        "version": 2,
        "boot_id": "an-earlier-boot",
        "originals": {uuid_of(backend, "dom1"): {"name": "dom1", "weight": 256}},
    }
    (settings.state_dir / "state.json").write_text(json.dumps(saved))
    daemon = Daemon(settings, backend)
    with capture_logs() as logs:
        daemon.reconcile()
    done = next(e for e in logs if e["event"] == "reconciled with saved state")
    assert (done["originals"], done["forgotten"]) == (0, 1)


def test_the_override_of_a_domain_that_stopped_is_shown_and_can_be_dropped(
    settings: Settings,
) -> None:
    """The override stays for when the domain starts again; status lists it as not running,
    and unset by name (or UUID) drops it without asking the host for the domain."""
    scenario = parse_scenario(
        {
            "name": "short-lived",
            "domains": [
                {"name": "stays", "workload": "receive"},
                {"name": "goes", "workload": "receive", "stop_s": 3},
            ],
        },
        "test",
    )
    backend = SimulatorBackend.from_scenario(scenario, speed=None)
    daemon = Daemon(settings, backend)
    goes = uuid_of(backend, "goes")
    daemon.set_weight("goes", 4000)
    ticks(daemon, backend, 2)
    assert daemon.status()["overrides"] == [
        {"name": "goes", "uuid": goes, "weight": 4000, "running": False}
    ]
    assert f"  goes ({goes}): 4000" in render_status(daemon.status())
    with pytest.raises(ControlError, match="no running domain named 'stays2'"):
        daemon.unset("stays2")
    assert daemon.unset("goes") == "goes: manual weight removed (not running: nothing to put back)"
    assert daemon.status()["overrides"] == []
    assert json.loads((settings.state_dir / "state.json").read_text())["overrides"] == {}


class FindsThenPartial:
    """A policy that finds unfairness, then reports a collapse on a partial tick."""

    name = "test"

    def __init__(self) -> None:
        self.calls = 0

    def decide(
        self, observation: Observation, assessment: Assessment, context: PolicyContext, state: Any
    ) -> Decision:
        self.calls += 1
        if self.calls == 1:
            return Decision(findings=(Finding("unfairness", "Jain 0.5", {}),))
        return Decision(findings=(Finding("collapse", "on partial figures", {}),), partial=True)


def test_a_partial_tick_leaves_the_last_findings_standing(
    settings: Settings, backend: SimulatorBackend
) -> None:
    daemon = Daemon(settings, backend, FindsThenPartial())
    ticks(daemon, backend, 3)
    assert [f["kind"] for f in daemon.status()["findings"]] == ["unfairness"]
    assert daemon.assessment is not None
    assert [f.kind for f in daemon.assessment.findings] == ["unfairness"]


def test_the_override_of_a_domain_created_again_under_a_new_uuid_can_be_dropped_by_name(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """`xl create` without `uuid=` gives the domain a new UUID: its old override stays
    under the old one, and unset by name drops it while the new domain runs."""
    settings.state_dir.mkdir(parents=True)
    old = "0badc0de-0000-4000-8000-000000000001"
    saved = {"version": 2, "overrides": {old: {"name": "dom1", "weight": 4000}}}
    (settings.state_dir / "state.json").write_text(json.dumps(saved))
    daemon = Daemon(settings, backend)
    ticks(daemon, backend, 1)
    assert daemon.unset("dom1") == "dom1: manual weight removed (not running: nothing to put back)"
    assert daemon.status()["overrides"] == []
    assert weight(backend, "dom1") == 256


def test_unset_settles_a_legacy_original_so_a_later_weight_by_hand_stays(
    settings: Settings, backend: SimulatorBackend
) -> None:
    """A version 1 original (legacy: whatever differs is xvrd's) of a domain reconcile
    could not read: once unset has put its weight back, a weight set by hand afterwards is
    the operator's, and the stop leaves it."""
    from xvrd.state import Original

    daemon = Daemon(settings, backend)
    dom1 = uuid_of(backend, "dom1")
    daemon.state.originals[dom1] = Original(name="dom1", weight=256, pinning=[[0, 1]], legacy=True)
    daemon.set_weight("dom1", 512)
    daemon.unset("dom1")
    assert weight(backend, "dom1") == 256
    backend.host.set_weight(backend.host.domain(1).domid, 700)  # by hand
    daemon.shutdown()
    assert weight(backend, "dom1") == 700
