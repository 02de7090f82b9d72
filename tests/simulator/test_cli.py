"""`xvrd simulate` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xvrd.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "receive", "--domus", "2",
        "--duration", "1", "--warmup", "0.5", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert {"domains", "dom0", "idle_pct", "aggregate_mbps", "jain", "efficiency"} <= data.keys()
    assert {"sim_seconds", "wall_seconds"} <= data.keys()
    assert [d["name"] for d in data["domains"]] == ["dom1", "dom2"]
    for d in data["domains"]:
        assert {"name", "throughput_mbps", "cpu_pct", "weight"} <= d.keys()
    assert data["dom0"]["weight"] == 256
    assert data["sim_seconds"] == 1.5
    total = sum(d["throughput_mbps"] for d in data["domains"])
    assert abs(total - data["aggregate_mbps"]) < 0.1


def test_weights_and_cpus_override_the_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "send", "--domus", "1", "--dom0-weight", "2048",
        "--domu-weight", "512", "--pcpus", "4", "--duration", "1", "--warmup", "0", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["dom0"]["weight"] == 2048
    assert data["domains"][0]["weight"] == 512


def test_human_table_lists_domains_dom0_idle_and_totals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "forward", "--domus", "1",
        "--duration", "1", "--warmup", "0.5",
    )  # fmt: skip
    assert code == 0
    for word in ("dom1", "dom0", "idle", "aggregate", "Jain", "efficiency"):
        assert word in out
    assert "dom0 Linux 2.6.16-xen" in out.splitlines()[0]  # the forwarding testbed's


def test_scenario_file_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'duration_s = 1\nwarmup_s = 0.5\n[[domains]]\nname = "a"\nworkload = "burn"\nduty = 0.5\n',
        encoding="utf-8",
    )
    code, out, _ = run_cli(capsys, "simulate", "--scenario", str(path), "--json")
    assert code == 0
    burner = json.loads(out)["domains"][0]
    assert burner["throughput_mbps"] is None
    assert 20 < burner["cpu_pct"] < 30  # half of one of two CPUs


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--dom0-weight", "0"], 2, "--dom0-weight: must be in [1, 65535]"),
        (["--domus", "-1"], 2, "--domus: must be in [1, 1024]"),
        (["--duration", "0"], 2, "--duration: must be > 0"),
        (["--workload", "teleport"], 2, "invalid choice"),
        (["--scenario", "/nonexistent.toml"], 78, "no such scenario file"),
        (["--scenario", "SCEN", "--domus", "3"], 78, "--domus: only with --workload"),
        (["--warmup", "inf"], 2, "--warmup: must be >= 0 and <= 86400"),
        (["--warmup", "nan"], 2, "--warmup: must be >= 0 and <= 86400"),
        (["--duration", "1e9"], 2, "--duration: must be > 0 and <= 86400"),
        (["--strategies", "oracle"], 78, "xvrd simulate: --strategies: not used here"),
        (["suite", "--warmup", "1", "--pcpus", "4"], 78, "--pcpus, --warmup: not used here"),
        (["suite", "--policy", "adaptive"], 78, "suite: --policy: not used here"),
        (["calibrate", "--dom0-weight", "512"], 78, "calibrate: --dom0-weight: not used here"),
        (["calibrate", "--workload", "send"], 78, "calibrate: --workload: not used here"),
        (["--scenario", ""], 78, "--scenario: a file name is needed (got '')"),
        (["--scenario", "SCEN", "--workload", "send"], 78, "--scenario, --workload: give one"),
        (["suite", "--warmup", "0"], 78, "suite: --warmup: not used here"),  # 0 is given
        (["suite", "--scenarios", "app-limited", "--plot", "/proc/x"], 78, "--plot: cannot make"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    scen = tmp_path / "s.toml"
    scen.write_text("[[domains]]\n", encoding="utf-8")
    argv = [str(scen) if a == "SCEN" else a for a in argv]
    got, out, err = run_cli(capsys, "simulate", *argv)
    assert got == code
    assert message in err
    assert out == ""


def test_calibrate_reports_every_cell_and_exits_by_tolerance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys, "simulate", "calibrate", "--duration", "2", "--warmup", "1", "--json"
    )
    data = json.loads(out)
    cells = {c["cell"] for c in data["checks"]}
    assert "receive N=8 dom0=256" in cells
    assert "send N=8 dom0=8192" in cells
    assert data["checked"] > 30
    assert code == (1 if data["failed"] else 0)


def test_adaptive_policy_closes_the_loop_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "receive", "--domus", "8", "--policy", "adaptive",
        "--duration", "10", "--warmup", "10", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["dom0"]["weight"] > 256  # the policy raised it
    assert data["jain"] > 0.9
    raise_ = next(c for c in data["changes"] if c["domain"] == "Domain-0")
    assert raise_["setting"] == "weight"
    assert raise_["old"] == "256"
    assert raise_["t_s"] == 2.0  # its first tick with rates
    # a pin of dom0 changes all nine domains' affinities in one tick
    pins = [c for c in data["changes"] if c.get("setting") == "pinning"]
    assert len(pins) == 9
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "receive", "--domus", "8", "--policy", "adaptive",
        "--duration", "10", "--warmup", "10",
    )  # fmt: skip
    assert "settings the adaptive policy changed" in out
    assert "Domain-0 weight 256 -> " in out
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "receive", "--domus", "2", "--duration", "1", "--json"
    )
    assert "changes" not in json.loads(out)  # no policy, nothing to list


def test_the_operators_environment_does_not_reach_the_closed_loop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """XVRD_* configure the daemon, not an experiment: under XVRD_MODE=advise (or another
    interval) the simulated policy still acts, every control interval as documented."""
    monkeypatch.setenv("XVRD_MODE", "advise")
    monkeypatch.setenv("XVRD_INTERVAL_S", "7")
    code, out, _ = run_cli(
        capsys, "simulate", "--workload", "receive", "--domus", "8", "--policy", "adaptive",
        "--duration", "10", "--warmup", "10", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["dom0"]["weight"] > 256


def test_flags_combine_with_every_shipped_scenario_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Flags on top of a file re-validate the combination, and only what was written or
    given counts: defaults the file left out (a ping interval on a receive domain) do not."""
    for path in sorted((Path(__file__).parents[2] / "simulator" / "scenarios").glob("*.toml")):
        code, _, err = run_cli(
            capsys, "simulate", "--scenario", str(path), "--duration", "0.2", "--warmup", "0",
            "--pcpus", "4", "--domu-weight", "300", "--dom0-weight", "512", "--json",
        )  # fmt: skip
        assert code == 0, f"{path.name}: {err}"
