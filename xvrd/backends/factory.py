"""Build the backend the settings name. Backends import libvirt or the simulator lazily,
here, so a host without libvirt-python can still run the simulator, and the other way."""

from __future__ import annotations

from xvrd.backends.base import Backend
from xvrd.config import ConfigError, Settings


def make_backend(settings: Settings) -> Backend:
    """The configured backend. Raises ConfigError for a bad scenario or a missing binding,
    BackendUnavailable when libvirtd cannot be reached."""
    if settings.backend == "simulator":
        from simulator.scenario import ScenarioError, load_scenario
        from xvrd.backends.simulated import SimulatorBackend

        if settings.scenario is None:
            raise ConfigError("scenario: required when backend = 'simulator'")
        try:
            scenario = load_scenario(settings.scenario)
        except ScenarioError as exc:
            raise ConfigError(f"scenario: {exc}") from None
        return SimulatorBackend.from_scenario(scenario, seed=settings.seed, speed=settings.speed)
    try:
        from xvrd.backends.libvirt import LibvirtBackend
    except ImportError as exc:
        raise ConfigError(
            f"backend: 'libvirt' needs libvirt-python (pip install 'xvrd[libvirt]'): {exc}"
        ) from None
    backend: Backend = LibvirtBackend(settings.libvirt_uri)
    return backend
