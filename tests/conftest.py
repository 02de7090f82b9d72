"""Project-wide test setup."""

from __future__ import annotations

import os

import pytest

import simulator


def pytest_configure(config: pytest.Config) -> None:
    stale = simulator.stale_compiled_modules()
    if stale:
        pytest.exit(
            f"compiled simulator modules older than their source: {', '.join(stale)}; "
            "run `make venv` (rebuilds them) or delete simulator/*.so",
            returncode=4,
        )


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own XVRD_* variables (a config file, a mode) must not reach the tests;
    a test that means to set one does so itself."""
    for name in list(os.environ):
        if name.upper().startswith("XVRD_"):
            monkeypatch.delenv(name)
