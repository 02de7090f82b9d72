"""Shared by the tests that start `xvrd run` as a process on a simulated host."""

from __future__ import annotations

from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenarios"


def simulator_config(path: Path, state_dir: Path, socket_path: Path, **keys: object) -> Path:
    """Write a config file for the simulator backend (receive-4 unless ``scenario`` is
    given) plus ``keys``, TOML-quoted; returns ``path``."""
    keys.setdefault("scenario", SCENARIOS / "receive-4.toml")
    lines = [
        f'state_dir = "{state_dir}"',
        f'socket_path = "{socket_path}"',
        'backend = "simulator"',
        *(f"{k} = {v}" if isinstance(v, int | float) else f'{k} = "{v}"' for k, v in keys.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
