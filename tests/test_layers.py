"""The core never imports libvirt or the simulator: only backend modules do.

The exceptions are the backends themselves and the CLI's composition root, which registers
`xvrd simulate`. Checked on the source (imports inside functions included).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "xvrd"
ALLOWED = {
    "libvirt": {"backends/libvirt.py"},
    "simulator": {"backends/simulated.py", "backends/factory.py", "cli.py"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_backend_modules_import_libvirt_or_the_simulator() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for forbidden, allowed in ALLOWED.items():
            if forbidden in imported_roots(path) and rel not in allowed:
                offenders.append(f"{rel} imports {forbidden}")
    assert offenders == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import libvirt\n", encoding="utf-8")
    assert "libvirt" in imported_roots(module)
