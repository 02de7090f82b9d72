"""Configuration: file, environment and flags; one clear message per bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xvrd.config import ConfigError, load_settings

DOCUMENTED = Path(__file__).resolve().parents[2] / "config" / "xvrd.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xvrd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_config_file_loads_and_matches_the_defaults() -> None:
    from_file = load_settings(DOCUMENTED)
    assert from_file.interval_s == 2.0
    assert from_file.libvirt_uri == "xen:///system"
    assert from_file.restore_on_exit is True


def test_every_setting_is_documented_in_the_config_file() -> None:
    from xvrd.config import Settings

    text = DOCUMENTED.read_text(encoding="utf-8")
    for key in Settings.model_fields:
        assert f"{key} =" in text or f"# {key} =" in text, key


def test_precedence_flags_then_environment_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "interval_s = 5\nmode = 'advise'\nlink_mbps = 10000\n")
    monkeypatch.setenv("XVRD_INTERVAL_S", "7")
    monkeypatch.setenv("XVRD_MODE", "auto")
    s = load_settings(path, interval_s=9.0, mode=None)
    assert s.interval_s == 9.0  # flag
    assert s.mode == "auto"  # environment over file
    assert s.link_mbps == 10000  # file over default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval_s = 0", "interval_s: Input should be greater than or equal to 0.1 (got 0)"),
        ("mode = 'yolo'", "mode: Input should be 'auto' or 'advise' (got 'yolo')"),
        ("network_active_mbps = 0", "network_active_mbps: Input should be greater than 0"),
        ("restore_on_exit = 'perhaps'", "restore_on_exit: Input should be a valid boolean"),
        ("interval = 3", "interval: unknown setting; accepted: admin_group, backend, "),
        ("admin_group = 'wheel;rm'", "admin_group: must be a group name"),
        ("backend = 'simulator'", "scenario: required when backend = 'simulator'"),
    ],
)
def test_bad_value_names_the_key_and_what_is_accepted(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval_s = true", "interval_s: Input should be a valid number (got True)"),
        ("restore_on_exit = 'no'", "restore_on_exit: Input should be a valid boolean (got 'no')"),
        ("seed = true", "seed: Input should be a valid integer (got True)"),
        ("link_mbps = '1e3'", "link_mbps: Input should be a valid number (got '1e3')"),
        ("state_dir = 5", "state_dir: Input should be a valid string (got 5)"),
        ("network_active_mbps = inf", "network_active_mbps: Input should be a finite number"),
        ("interval_s = nan", "interval_s: Input should be a finite number"),
        ("state_dir = ''", "state_dir: must be a path, not empty"),
        ("socket_path = '  '", "socket_path: must be a path, not empty"),
    ],
)
def test_a_file_value_of_the_wrong_type_is_refused_not_converted(
    tmp_path: Path, text: str, message: str
) -> None:
    """TOML has types: unlike an environment variable's text, a file's true is no number."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, text))


def test_a_misspelt_or_empty_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "")
    monkeypatch.setenv("XVRD_MOD", "advise")
    with pytest.raises(ConfigError, match=r"^XVRD_MOD: not an xvrd setting \(the settings: "):
        load_settings(path)
    monkeypatch.delenv("XVRD_MOD")
    monkeypatch.setenv("XVRD_STATE_DIR", "")
    with pytest.raises(ConfigError, match="XVRD_STATE_DIR: state_dir: must be a path, not empty"):
        load_settings(path)
    monkeypatch.delenv("XVRD_STATE_DIR")
    monkeypatch.setenv("XVRD_CONFIG", "")
    with pytest.raises(ConfigError, match=r"^XVRD_CONFIG is empty: a config file's path"):
        load_settings()


def test_a_config_file_that_cannot_be_reached_is_an_error(tmp_path: Path) -> None:
    """Not a traceback: Path.exists() raises for a path it cannot look up (a directory
    it may not search, a name too long)."""
    with pytest.raises(ConfigError, match=r"cannot read: .*File name too long"):
        load_settings(tmp_path / ("x" * 300))


def test_missing_explicit_file_and_broken_toml_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "interval_s = ["))


def test_missing_default_file_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XVRD_CONFIG", raising=False)
    monkeypatch.setattr("xvrd.config.DEFAULT_CONFIG_PATH", Path("/nonexistent/xvrd.toml"))
    assert load_settings().interval_s == 2.0


def test_error_names_where_the_bad_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad flag or XVRD_ variable is not blamed on the config file (which may be fine)."""
    path = write(tmp_path, "interval_s = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, interval_s=0)
    assert str(info.value).startswith("command line: interval_s: ")
    monkeypatch.setenv("XVRD_INTERVAL_S", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith("XVRD_INTERVAL_S: interval_s: ")
    monkeypatch.delenv("XVRD_INTERVAL_S")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "interval_s = 0\n"))
    assert str(info.value).startswith(f"{tmp_path / 'xvrd.toml'}: interval_s: ")


def test_every_run_flag_reaches_the_settings(tmp_path: Path) -> None:
    """Each of `xvrd run`'s setting flags is passed on, over the file's value."""
    from xvrd.cli import build_parser
    from xvrd.commands.run import _settings

    path = write(tmp_path, "log_level = 'debug'\nmode = 'auto'\ninterval_s = 5\n")
    args = build_parser().parse_args(
        ["run", "--config", str(path), "--log-level", "error", "--mode", "advise",
         "--interval", "0.5"]
    )  # fmt: skip
    settings = _settings(args)
    assert (settings.log_level, settings.mode, settings.interval_s) == ("error", "advise", 0.5)
