"""Settings from TOML and XVRD_* variables; bad values and missing files exit 78."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from xvrd.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
XVRD = [sys.executable, "-m", "xvrd.cli"]


def test_documented_default_file_is_the_defaults() -> None:
    """config/xvrd.toml documents every key, with the value the code uses by default."""
    data = tomllib.loads((ROOT / "config" / "xvrd.toml").read_text())
    defaults = Settings().model_dump(mode="json")
    assert data == defaults


def test_env_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XVRD_* overrides the file, nested keys with a double underscore."""
    f = tmp_path / "x.toml"
    f.write_text('interval_s = 5\n[control]\nadmin_group = "staff"\n')
    monkeypatch.setenv("XVRD_INTERVAL_S", "3")
    s = load_settings(f)
    assert s.interval_s == 3.0
    assert s.control.admin_group == "staff"
    monkeypatch.setenv("XVRD_CONTROL__ADMIN_GROUP", "adm")
    assert load_settings(f).control.admin_group == "adm"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("interval_s = 0", "interval_s: Input should be greater than or equal to 0.1"),
        ('mode = "yolo"', "mode: must be 'auto' or 'advise'"),
        ("[backend]\nspeed = -1", "backend.speed: Input should be greater than 0"),
        ("bogus = 1", "bogus: Extra inputs are not permitted"),
        ("interval_s = ", "not valid TOML"),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    """One message naming the key and what is accepted."""
    f = tmp_path / "x.toml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match=r"x\.toml") as err:
        load_settings(f)
    assert expected in str(err.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    """A --config that does not exist is refused; the default path may be absent."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XVRD, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_daemon_exits_78_on_bad_value_and_touches_nothing(tmp_path: Path) -> None:
    """`xvrd run` with a bad value: exit 78, one line naming the key, no state written."""
    f = tmp_path / "x.toml"
    f.write_text(f'state_dir = "{tmp_path / "state"}"\n[policy]\ndom0_weight = 0\n')
    r = _run("run", "--config", str(f), "--backend", "simulator", "--once")
    assert r.returncode == 78
    assert "policy.dom0_weight" in r.stderr
    assert "greater than or equal to 1" in r.stderr
    assert not (tmp_path / "state").exists()


def test_daemon_exits_78_on_missing_config(tmp_path: Path) -> None:
    """`xvrd run --config MISSING`: the documented message and exit 78."""
    r = _run("run", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 78
    assert r.stderr.strip() == f"xvrd: config file {tmp_path / 'nope.toml'} does not exist"


def test_daemon_exits_78_on_bad_env_value(tmp_path: Path) -> None:
    """Environment values are validated the same way."""
    f = tmp_path / "x.toml"
    f.write_text("")
    r = _run("run", "--config", str(f), env={"XVRD_RESTORE_ON_EXIT": "maybe"})
    assert r.returncode == 78
    assert "restore_on_exit" in r.stderr


def test_daemon_exits_78_on_unknown_group_or_scenario(tmp_path: Path) -> None:
    """A group that does not exist, or a scenario that cannot load, is a config error."""
    f = tmp_path / "x.toml"
    f.write_text('[control]\ngroup = "no-such-group-xvrd"\n')
    r = _run("run", "--config", str(f), "--backend", "simulator")
    assert r.returncode == 78
    assert "control.group: no such group 'no-such-group-xvrd'" in r.stderr
    f.write_text(f'state_dir = "{tmp_path}"\n')
    r = _run("run", "--config", str(f), "--backend", "simulator", "--scenario", "nope-scn")
    assert r.returncode == 78
    assert "backend.scenario" in r.stderr
