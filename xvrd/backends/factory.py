"""Build the backend the settings name: the one place that chooses between host kinds."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xvrd.backends.base import Backend
from xvrd.config import BackendSettings, ConfigError

#: Called before each live tick; lets a simulated clock catch up with wall time.
BeforeTick = Callable[[], None]


def open_backend(b: BackendSettings) -> tuple[Backend, BeforeTick | None]:
    """The configured backend and its before-tick hook (None for a real host).

    Raises `ConfigError` for a scenario that cannot be loaded, `ImportError` when the libvirt
    binding is not installed and `BackendError` when the host cannot be reached.
    """
    if b.kind == "simulator":
        from simulator.host import SimulatedHost
        from xvrd.backends.simulated import SimulatorBackend, resolve_scenario

        try:
            scenario = resolve_scenario(b.scenario)
        except ValueError as exc:
            raise ConfigError(f"backend.scenario: {exc}") from None
        sim = SimulatorBackend(
            SimulatedHost(scenario, seed=b.seed),
            speed=b.speed,
            uri=f"simulator:///{scenario.name}",
        )
        return sim, sim.sync
    module = importlib.import_module("xvrd.backends.libvirt")
    backend: Backend = module.LibvirtBackend(b.uri)
    return backend, None
