"""A simulated Xen host: credit scheduler, split network driver, TCP, workloads."""

from __future__ import annotations

from pathlib import Path

#: Modules setup.py compiles with mypyc; keep in step with setup.py's COMPILED.
COMPILED_MODULES = ("engine", "credit", "tcp", "network", "netback", "workloads")


def stale_compiled_modules() -> list[str]:
    """Compiled modules older than their source: they would run yesterday's model."""
    here = Path(__file__).parent
    stale = []
    for name in COMPILED_MODULES:
        source = here / f"{name}.py"
        for ext in here.glob(f"{name}.*.so"):
            if source.exists() and ext.stat().st_mtime < source.stat().st_mtime:
                stale.append(name)
    return stale
