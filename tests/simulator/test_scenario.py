"""Scenario files: every shipped file loads; bad input names the field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

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
        ({"domains": [{"pinning": [3]}]}, "pinning must list CPUs in 0..1"),
        ({"phases": [{"at_s": 1, "action": "stop", "domain": "x"}]}, "unknown domain 'x'"),
        ({"hosts": {}}, "hosts: Extra inputs are not permitted"),
        ({"warmup_s": float("inf")}, "warmup_s: Input should be less than or equal to 86400"),
        ({"host": {"dom0_kernel": "2.6.32"}}, "host.dom0_kernel: Input should be '2.6.18-xen'"),
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
