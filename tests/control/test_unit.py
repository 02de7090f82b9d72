"""systemd/xvrd.service: valid for systemd, and as hardened as the unit claims.

PID 1 here need not be systemd: `systemd-analyze verify` and `security --offline` read unit
files without a running manager. verify insists the ExecStart binary exists, so the unit is
checked as a copy whose ExecStart points at a stand-in executable; nothing else changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xvrd.config import Settings
from xvrd.exits import EX_CONFIG

UNIT = Path(__file__).parents[2] / "systemd" / "xvrd.service"
EXEC_START = "ExecStart=/usr/bin/xvrd run"
#: `systemd-analyze security` scores exposure from 0 (locked down) to 10; "OK" is below 4.
MAX_EXPOSURE = 3.0


@pytest.fixture
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing in CI (Debian package: systemd)")
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    return path


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    standin = tmp_path / "xvrd"
    standin.write_text("#!/bin/sh\nexit 0\n")
    standin.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(EXEC_START) == 1
    copy = tmp_path / "xvrd.service"
    copy.write_text(text.replace(EXEC_START, f"ExecStart={standin} run"))
    return copy


def analyze(systemd_analyze: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_unit_verifies_without_a_warning(systemd_analyze: str, unit_copy: Path) -> None:
    """verify exits 0 even for an unknown key, so its warnings count as failures too."""
    result = analyze(systemd_analyze, "verify", str(unit_copy))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_would_catch_a_mistyped_key(systemd_analyze: str, unit_copy: Path) -> None:
    unit_copy.write_text(unit_copy.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    assert "Unknown key 'WatchdogSecs'" in analyze(systemd_analyze, "verify", str(unit_copy)).stderr


def test_the_units_exposure_is_low(systemd_analyze: str, unit_copy: Path) -> None:
    result = analyze(systemd_analyze, "security", "--offline=yes", str(unit_copy))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_the_daemon_the_way_the_daemon_expects() -> None:
    """Type=notify matches the daemon's READY/WATCHDOG datagrams; the socket's directory
    and the state directory are the ones the default config names."""
    unit = directives(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "ExecStart": ["/usr/bin/xvrd run"],
        "WatchdogSec": ["30"],
        "Restart": ["on-failure"],
        # a configuration error is permanent: no restart loop every RestartSec
        "RestartPreventExitStatus": [str(EX_CONFIG)],
        "RuntimeDirectory": ["xvrd"],  # /run/xvrd/xvrd.sock
        "RuntimeDirectoryMode": ["0750"],
        "StateDirectory": ["xvrd"],  # /var/lib/xvrd
        "RestrictAddressFamilies": ["AF_UNIX"],
        "MemoryDenyWriteExecute": ["yes"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
    }
    assert {key: unit.get(key) for key in expected} == expected
    default = {name: field.default for name, field in Settings.model_fields.items()}
    assert default["socket_path"].parent == Path("/run") / unit["RuntimeDirectory"][0]
    assert default["state_dir"] == Path("/var/lib") / unit["StateDirectory"][0]
