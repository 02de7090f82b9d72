"""systemd/xvrd.service passes `systemd-analyze verify` (never skipped in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "xvrd.service"


def test_unit_verifies(tmp_path: Path) -> None:
    """The unit is valid; ExecStart points at this install's xvrd (the path is per install)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI: install systemd (see .ci/run)")
        pytest.skip("systemd-analyze not installed")
    xvrd = Path(sys.executable).parent / "xvrd"
    text = UNIT.read_text().replace("ExecStart=/usr/bin/xvrd", f"ExecStart={xvrd}")
    unit = tmp_path / "xvrd.service"
    unit.write_text(text)
    r = subprocess.run(
        [analyze, "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "xvrd.service" not in r.stderr, r.stderr


def test_unit_has_what_the_daemon_relies_on() -> None:
    """Type=notify with a watchdog, restarts, its own runtime and state directories."""
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "RuntimeDirectory=xvrd",
        "StateDirectory=xvrd",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestartPreventExitStatus=78",
    ):
        assert line in text.splitlines()
    assert any(x.startswith("WatchdogSec=") for x in text.splitlines())
