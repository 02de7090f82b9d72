"""Scenario files: every shipped file loads; bad input names the field."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from simulator.host import SimulatedHost
from simulator.scenario import ScenarioError, load_scenario, parse_scenario, report_scenario

SCENARIO_DIR = Path(str(resources.files("simulator").joinpath("scenarios")))
SCENARIOS = sorted(SCENARIO_DIR.glob("*.toml"))


def test_the_report_experiments_and_the_extras_are_shipped() -> None:
    names = {p.stem for p in SCENARIOS}
    for wl in ("send", "receive", "forward"):
        for n in (1, 2, 4, 8):
            assert f"{wl}-{n}" in names
    assert {"network-among-burners", "app-limited", "join-leave"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.domains


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"domains": [{"weight": 0}]}, "domains[0].weight"),
        ({"host": {"pcpus": 0}}, "host.pcpus"),
        ({"domains": [{"workload": "forward"}]}, "forward needs host.nics >= 2"),
        ({"domains": [{"workload": "tcp_rate"}]}, "rate_mbps is required"),
        ({"domains": [{"workload": "dance"}]}, "domains[0].workload"),
        ({"domains": [{"pinning": [3]}]}, "domains[0].pinning: must list CPUs in 0..1"),
        (
            {"domains": [{}], "phases": [{"at_s": 1, "action": "stop", "domain": "x"}]},
            "phases[0].domain: no domain named 'x'",
        ),
        ({"hosts": {}}, "hosts: unknown field; accepted: description, domains, duration_s, host"),
        ({"warmup_s": float("inf")}, "warmup_s: Input should be a finite number"),
        ({"domains": [{"start_s": float("inf")}]}, "domains[0].start_s: Input should be a finite"),
        ({"domains": [{"start_s": 1e300}]}, "domains[0].start_s: Input should be less than"),
        ({"host": {"dom0_kernel": "2.6.32"}}, "host.dom0_kernel: Input should be '2.6.18-xen'"),
        # Strict types: nothing converted behind the user's back.
        ({"domains": [{"weight": "256"}]}, "domains[0].weight: Input should be a valid integer"),
        ({"domains": [{"weight": True}]}, "domains[0].weight: Input should be a valid integer"),
        ({"host": {"pcpus": "2"}}, "host.pcpus: Input should be a valid integer"),
        ({"duration_s": "10"}, "duration_s: Input should be a valid number"),
        ({"domains": [{"pinning": ["1"]}]}, "domains[0].pinning[0]: Input should be a valid int"),
        # Parameters of another workload, or of no workload at all.
        ({"domains": [{"workload": "send", "duty": 0.5}]}, "duty: only for workload burn"),
        ({"domains": [{"workload": "burn", "rate_mbps": 5}]}, "rate_mbps: only for workload"),
        ({"domains": [{"workload": "ping", "interval_ms": 1e-7}]}, "interval_ms: Input should"),
        ({"domains": [{"cap": 101}]}, "domains[0].cap: Input should be less than or equal to 100"),
        ({"host": {"link_mbps": 1e-300}}, "host.link_mbps: Input should be greater than or equal"),
        ({"host": {"dom0_cap": 250, "dom0_vcpus": 2}}, "dom0_cap: at most 100 per vCPU, 200"),
        ({"domains": [{"start_s": 0.8, "stop_s": 0.2}]}, "stop_s: must be after start_s (0.8)"),
        ({}, "domains: at least one domU is needed"),
        ({"name": "", "domains": [{}]}, "name: String should have at least 1 character"),
        ({"domains": [{"name": "a"}, {"name": "a"}]}, "domains: names must be unique ('a' twice)"),
        ({"domains": [{"name": "Domain-0"}]}, "domains: 'Domain-0' is dom0's name"),
    ],
)
def test_bad_scenario_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=None) as info:
        parse_scenario(data, "test.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("test.toml: ")


def test_missing_and_malformed_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("duration_s = [", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)


def test_report_scenario_names_domains_in_creation_order() -> None:
    assert report_scenario("receive", n_domus=3).domain_names() == ["dom1", "dom2", "dom3"]
    assert report_scenario("send", n_domus=1).domain_names() == ["dom1"]
    assert report_scenario("forward", n_domus=2).host.nics == 2


def test_report_scenarios_run_the_kernel_of_the_testbed_that_measured_them() -> None:
    """The report measured forwarding on Xen 3.0.4, send and receive on Xen 3.1.0; the
    shipped files say the same."""
    for wl, kernel in (
        ("send", "2.6.18-xen"),
        ("receive", "2.6.18-xen"),
        ("forward", "2.6.16-xen"),
    ):
        assert report_scenario(wl, n_domus=2).host.dom0_kernel == kernel
        for n in (1, 2, 4, 8):
            assert load_scenario(SCENARIO_DIR / f"{wl}-{n}.toml").host.dom0_kernel == kernel


def _phase(**keys: object) -> dict[str, object]:
    return {"domains": [{"name": "a", "workload": "send"}], "phases": [{"at_s": 1, **keys}]}


@pytest.mark.parametrize(
    ("phase", "message"),
    [
        ({"action": "workload", "domain": "a"}, "phases[0]: action 'workload' needs workload"),
        ({"action": "workload", "domain": "a", "workload": "forward"}, "forward needs host.nics"),
        ({"action": "stop", "domain": "a", "duty": 0.3}, "duty: only with action 'workload'"),
        ({"action": "stop", "domain": "a", "weight": 5}, "weight: only with action 'weight'"),
        ({"action": "weight", "domain": "a"}, "phases[0]: action 'weight' needs weight"),
        ({"action": "cap", "domain": "a", "cap": 200}, "phases[0].cap: Input should be less"),
        ({"action": "stop", "domain": "a", "at_s": float("inf")}, "at_s: Input should be a finite"),
        (
            {"action": "workload", "domain": "a", "workload": "send", "duty": 0.5},
            "phases[0]: duty: only for workload burn, not 'send'",
        ),
    ],
)
def test_a_phase_takes_only_the_keys_of_its_action(phase: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_phase(**phase), "test.toml")
    assert message in str(info.value)


def _lifecycle(*phases: dict[str, object]) -> dict[str, object]:
    """'a' runs throughout; 'b' from 5 s to 10 s."""
    return {
        "domains": [
            {"name": "a", "workload": "send"},
            {"name": "b", "workload": "send", "start_s": 5, "stop_s": 10},
        ],
        "phases": list(phases),
    }


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ([{"at_s": 1, "action": "start", "domain": "a"}], "'a' is already running at 1 s"),
        ([{"at_s": 1, "action": "stop", "domain": "b"}], "'b' is not running at 1 s"),
        ([{"at_s": 10, "action": "cap", "domain": "b", "cap": 5}], "'b' is not running at 10 s"),
        (
            [{"at_s": 2, "action": "start", "domain": "b"}],
            "domains[1].start_s: 'b' is already running at 5 s, so 'start' would do nothing",
        ),
        (
            [{"at_s": 7, "action": "stop", "domain": "b"}],
            "domains[1].stop_s: 'b' is not running at 10 s, so 'stop' would do nothing",
        ),
        (
            [
                {"at_s": 2, "action": "stop", "domain": "a"},
                {"at_s": 3, "action": "workload", "domain": "a", "workload": "idle"},
            ],
            "phases[1]: 'a' is not running at 3 s, so 'workload' would do nothing",
        ),
    ],
)
def test_a_phase_that_would_do_nothing_is_refused(
    phases: list[dict[str, object]], message: str
) -> None:
    """The host skips a start of a running domain, or a change to a stopped one, a
    domain's own start_s and stop_s included: a file asking for one is a mistake, named
    with the domain's state at that moment."""
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario(_lifecycle(*phases))


def test_a_domain_stopped_can_be_started_again_and_changed() -> None:
    """A restart after a stop is a new domain on the host, and a phase may act on it."""
    scenario = parse_scenario(
        _lifecycle(
            {"at_s": 10, "action": "start", "domain": "b"},
            {"at_s": 11, "action": "weight", "domain": "b", "weight": 512},
            {"at_s": 12, "action": "stop", "domain": "b"},
        )
        | {"duration_s": 13, "warmup_s": 0}
    )
    host = SimulatedHost(scenario)
    host.advance(10.5)
    first = {d.name: d for d in host.domains()}
    host.advance(1.0)
    assert {d.name: d.weight for d in host.domains()}["b"] == 512
    assert first["b"].domid > 2  # a new domain ID: the one from 5 s to 10 s was 2
    host.advance(1.0)
    assert "b" not in {d.name for d in host.domains()}


def test_a_file_whose_events_fall_after_the_end_is_refused(tmp_path: Path) -> None:
    """A phase or a stop that would never happen is a mistake in the file; the same
    scenario shortened from the command line (or by the suite) just ends first."""
    path = tmp_path / "late.toml"
    path.write_text(
        "duration_s = 1\nwarmup_s = 0\n"
        '[[domains]]\nname = "a"\nworkload = "send"\nstop_s = 5\n'
        '[[phases]]\nat_s = 1000\naction = "start"\ndomain = "a"\n',
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"{path}: domains[0].stop_s = 5; phases[0].at_s = 1000: never happens, the run ends "
        "at 1 s (warmup_s + duration_s)"
    )


def test_the_documented_example_is_a_valid_scenario(tmp_path: Path) -> None:
    readme = Path(__file__).parents[2] / "simulator" / "scenarios" / "README.md"
    match = re.search(r"```toml\n(.*?)```", readme.read_text(), re.S)
    assert match is not None
    example = tmp_path / "example.toml"
    example.write_text(match.group(1))
    scenario = load_scenario(example)
    assert scenario.name == "my-experiment"
    assert [d.names()[-1] for d in scenario.domains] == ["dom8"]
