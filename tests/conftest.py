"""Project-wide test setup."""

from __future__ import annotations

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
