"""Only xvrd/backends/ may import the simulator or libvirt: the core sees a Backend only."""

from __future__ import annotations

import ast
from pathlib import Path

XVRD = Path(__file__).resolve().parents[2] / "xvrd"
FORBIDDEN = ("simulator", "libvirt")
#: Outside backends/, only these may *choose* a backend, and only through xvrd.backends.
ALLOWED = {XVRD / "cli.py"}  # registers `xvrd simulate`, the simulator's own command


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_core_never_imports_simulator_or_libvirt() -> None:
    """Every module outside xvrd/backends/ is free of simulator and libvirt imports."""
    offenders = []
    for path in XVRD.rglob("*.py"):
        if (XVRD / "backends") in path.parents or path in ALLOWED:
            continue
        for mod in imported_modules(path):
            if mod.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(XVRD.parent)} imports {mod}")
    assert offenders == []


def test_checker_sees_an_offending_import(tmp_path: Path) -> None:
    """The check would catch an import inside a function too."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from simulator.host import SimulatedHost\n    import libvirt\n")
    assert imported_modules(f) == {"simulator.host", "libvirt"}
