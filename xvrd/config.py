"""The daemon's settings: one typed tree read from a TOML file and ``XVRD_*`` variables.

Precedence, highest first: environment (``XVRD_INTERVAL_S=5``, nested keys with ``__``:
``XVRD_CONTROL__GROUP=xvrd``), then the TOML file, then the defaults documented in
``config/xvrd.toml``. Runtime state (overrides, hold, originals) is not configuration and lives
in the state directory instead.

Missing file rule: a file named with ``--config`` must exist (exit 78 otherwise); the default
``/etc/xvrd/xvrd.toml`` may be absent, and then the defaults apply.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_PATH = Path("/etc/xvrd/xvrd.toml")

#: Reference goodput of a 1 Gb/s Ethernet link carrying TCP (1448 payload bytes per 1538 on
#: the wire), the unit of "efficiency".
DEFAULT_LINK_GOODPUT_MBPS = 941.49


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key and what is accepted."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendSettings(_Group):
    kind: Literal["libvirt", "simulator"] = "libvirt"
    """Which host to drive: a real one through libvirt, or the simulated Xen host."""
    uri: str = "xen:///system"
    """libvirt connection URI (libvirt backend only)."""
    scenario: str = "receive-8"
    """Simulator only: a scenario file path, or the name of a shipped scenario."""
    speed: float = Field(1.0, gt=0, le=1000)
    """Simulator only: simulated seconds per wall second."""
    seed: int = Field(0, ge=0)
    """Simulator only: the seed of the simulated host."""


class ControlSettings(_Group):
    socket: Path = Path("/run/xvrd/xvrd.sock")
    """Path of the control socket (mode 0660)."""
    group: str = "root"
    """Group owning the socket: its members may read status."""
    admin_group: str = "root"
    """Members of this group (and root) may change settings through the socket."""
    max_request_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    """Largest request accepted; longer ones are refused with an error."""


class AnalysisSettings(_Group):
    link_goodput_mbps: float = Field(DEFAULT_LINK_GOODPUT_MBPS, gt=0)
    """Goodput of one NIC at line rate, the denominator of efficiency."""
    nics: int = Field(1, ge=1, le=64)
    """NICs carrying domU traffic; efficiency = aggregate / (nics * link_goodput_mbps)."""
    active_mbps: float = Field(1.0, ge=0)
    """A domU moving more than this (rx + tx) counts as network-active for Jain."""


class PolicySettings(_Group):
    name: Literal["noop", "static"] = "noop"
    """noop: observe only; static: keep dom0 at ``dom0_weight``."""
    dom0_weight: int = Field(2048, ge=1, le=65535)
    """The weight the static policy gives dom0."""


class Settings(BaseSettings):
    """Everything the daemon reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="XVRD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    interval_s: float = Field(2.0, ge=0.1, le=3600)
    """Seconds between control ticks."""
    mode: Literal["auto", "advise"] = "auto"
    """auto: apply the policy's actions; advise: log and show them, change nothing."""
    state_dir: Path = Path("/var/lib/xvrd")
    """Directory of the persisted state (originals, overrides, hold)."""
    restore_on_exit: bool = True
    """Put back every changed setting when the daemon stops."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto: JSON when stderr is not a terminal (journald), readable on a terminal."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged."""
    actions_kept: int = Field(20, ge=0, le=1000)
    """How many recent actions `xvrd status` shows."""
    backend: BackendSettings = BackendSettings()
    control: ControlSettings = ControlSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    policy: PolicySettings = PolicySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 (called by keyword)
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file's values, which arrive as init arguments.
        return (env_settings, init_settings)


def _describe(err: Any) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        msg = f"must be {ctx['expected']}"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{loc}: {msg}{shown}"


def load_settings(path: Path | None) -> Settings:
    """Read settings; ``path=None`` means the default file, which may be absent."""
    explicit = path is not None
    file = path if path is not None else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file}: not valid TOML: {exc}") from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"config {file}: {_describe(first)}") from None
