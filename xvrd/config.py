"""The daemon's settings: one typed tree from a TOML file, ``XVRD_*`` variables and flags.

Precedence, highest first: command-line flags, environment (``XVRD_INTERVAL_S=5``), the
TOML file, built-in defaults. ``config/xvrd.toml`` documents every key. An explicitly given
file that does not exist is an error; the default file (/etc/xvrd/xvrd.toml) missing means
built-in defaults. Every error is one `ConfigError` naming the key and what is accepted.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_PATH = Path("/etc/xvrd/xvrd.toml")

#: Bytes of a full frame a vif counts (1514: Ethernet header and payload, no FCS) per
#: 1538 bytes it occupies on the wire (preamble, inter-frame gap and FCS included).
FRAME_BYTES_PER_WIRE_BYTE = 1514 / 1538


def frame_mbps(link_mbps: float) -> float:
    """What a link of ``link_mbps`` carries as vifs count it (frame bytes), for efficiency."""
    return link_mbps * FRAME_BYTES_PER_WIRE_BYTE


class ConfigError(Exception):
    """Bad or unreadable configuration; the message names the key and what is accepted."""


class Settings(BaseSettings):
    """Everything an operator can set. Runtime state (overrides, hold) lives elsewhere."""

    # nan and inf are refused as what they are, not as out of range ("less than 3600, got nan")
    model_config = SettingsConfigDict(
        env_prefix="XVRD_", extra="forbid", frozen=True, allow_inf_nan=False
    )

    backend: Literal["libvirt", "simulator"] = "libvirt"
    """Where the host is: libvirtd (production) or the built-in simulated Xen host."""

    libvirt_uri: str = Field("xen:///system", min_length=1)
    """libvirt connection URI; xen:///system is the local libxl driver on a Xen dom0."""

    scenario: Path | None = None
    """Simulator backend: the scenario file (TOML) describing the simulated host."""

    speed: float = Field(1.0, gt=0, le=10_000)
    """Simulator backend: simulated seconds per wall-clock second."""

    seed: int = Field(0, ge=0)
    """Simulator backend: random seed."""

    interval_s: float = Field(2.0, ge=0.1, le=3600)
    """Seconds between control-loop ticks."""

    policy: Literal["adaptive", "noop"] = "adaptive"
    """adaptive: tune dom0's weight and pinning; noop: observe, report, honour overrides."""

    mode: Literal["auto", "advise"] = "auto"
    """auto: apply the policy's changes; advise: only report what it would change."""

    socket_path: Path = Path("/run/xvrd/xvrd.sock")
    """The control socket `xvrd status` and the override commands talk to."""

    socket_group: str = ""
    """Group owning the socket (mode 0660): its members may read status. Empty: root only."""

    admin_group: str = ""
    """Members of this group (and root) may change settings through the socket."""

    state_dir: Path = Path("/var/lib/xvrd")
    """Where originals, overrides and hold are persisted (state.json, written atomically)."""

    restore_on_exit: bool = True
    """Put back every setting xvrd changed when the daemon stops (not one changed by hand
    since)."""

    link_mbps: float = Field(1000.0, gt=0, le=1_000_000)
    """Line rate of the host's uplink, for efficiency (aggregate / what the link carries).
    The simulator backend uses its scenario's NIC speed instead."""

    network_active_mbps: float = Field(0.5, gt=0, le=1_000_000)
    """A domU moving at least this much (rx or tx) counts as network-active."""

    log_format: Literal["auto", "json", "console"] = "auto"
    """json for journald, console for people; auto picks console on a terminal."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged."""

    @field_validator("scenario", "socket_path", "state_dir", mode="before")
    @classmethod
    def _path(cls, value: object) -> object:
        # An empty path would mean the current directory: the state written wherever the
        # daemon happened to start.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a path, not empty")
        return value

    @field_validator("socket_group", "admin_group")
    @classmethod
    def _group_name(cls, value: str) -> str:
        if value and not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("must be a group name (letters, digits, '.', '_', '-') or empty")
        return value


def _format(exc: ValidationError, given: dict[str, Any], toml_path: Path | None) -> str:
    """One line: each bad key with where its value came from and what is accepted."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting; accepted: {', '.join(sorted(Settings.model_fields))}"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        source = _source_of(str(err["loc"][0]) if err["loc"] else "", given, toml_path)
        parts.append(f"{source}: {key}: {msg}{shown}")
    return "; ".join(parts)


def _source_of(key: str, given: dict[str, Any], toml_path: Path | None) -> str:
    """Where a key's value came from, in the order they take precedence."""
    if key in given:
        return "command line"
    env = f"XVRD_{key}".upper()
    if any(name.upper() == env for name in os.environ):
        return env
    return str(toml_path) if toml_path is not None else "configuration"


def _config_file(path: Path | None) -> tuple[Path | None, dict[str, Any]]:
    """The config file in effect (``path``, else XVRD_CONFIG, else the default file) and its
    parsed table; (None, {}) when the default file is absent. Errors name the file."""
    explicit = path is not None or "XVRD_CONFIG" in os.environ
    if path is None and not os.environ.get("XVRD_CONFIG", "unset").strip():
        raise ConfigError("XVRD_CONFIG is empty: a config file's path, or unset it")
    if path is None:
        path = Path(os.environ.get("XVRD_CONFIG", DEFAULT_CONFIG_PATH))
    try:
        # exists() raises, rather than answering, for a directory it may not search
        exists, regular = path.exists(), path.is_file()
        text = path.read_text(encoding="utf-8") if regular else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not exists:
        if explicit:
            raise ConfigError(
                f"config file {path} does not exist (given with --config or XVRD_CONFIG)"
            )
        return None, {}
    if not regular:
        raise ConfigError(f"config file {path} is not a regular file")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return path, table


#: Paths are strings in TOML, whatever type the setting has in Python.
_PATH_KEYS = frozenset({"scenario", "socket_path", "state_dir"})


def _check_types(table: dict[str, Any], path: Path) -> None:
    """TOML has types: a file's ``interval_s = true`` or ``restore_on_exit = "no"`` is a
    mistake to refuse, not a value to convert as an environment variable's text is."""
    problems = []
    for key, value in table.items():
        field = Settings.model_fields.get(key)
        if field is None:
            continue  # refused with the rest, naming the key
        expected = str if key in _PATH_KEYS else field.annotation
        try:
            TypeAdapter[Any](expected or object).validate_python(value, strict=True)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            problems.append(f"{path}: {key}: {msg} (got {value!r})")
    if problems:
        raise ConfigError("; ".join(problems))


#: ``XVRD_*`` variables that are not settings: the config file, and the build's and the
#: tests' own switches.
_OTHER_VARIABLES = frozenset({"XVRD_CONFIG", "XVRD_PURE_PYTHON", "XVRD_GUEST_CACHE"})


def _check_variables() -> None:
    """A misspelt ``XVRD_MOD=advise`` would otherwise be ignored, the daemon acting on the
    host when its operator meant it to only advise."""
    known = {f"XVRD_{name.upper()}" for name in Settings.model_fields} | _OTHER_VARIABLES
    unknown = sorted(
        n for n in os.environ if n.upper().startswith("XVRD_") and n.upper() not in known
    )
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)}: not an xvrd setting (the settings: "
            f"{', '.join(sorted(f'XVRD_{n.upper()}' for n in Settings.model_fields))})"
        )


def configured_socket_path(path: Path | None = None) -> Path | None:
    """The control socket the daemon's config file names, if it names one.

    The clients (`xvrd status` and the override commands) read only this key, so a daemon
    started with a non-default ``socket_path`` is found without repeating it on every call,
    and a mistake elsewhere in the file does not stop an operator from reaching the daemon.
    """
    toml_path, table = _config_file(path)
    if "socket_path" not in table:
        return None
    value = table["socket_path"]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{toml_path}: socket_path: a non-empty path string (got {value!r})")
    return Path(value)


def given_settings(**values: Any) -> Settings:
    """Settings from ``values`` and the defaults alone, whatever ``XVRD_*`` says.

    For runs whose outcome must not depend on who starts them: the simulator's closed loop
    and benchmarks, where an operator's ``XVRD_MODE=advise`` would silently turn the
    adaptive policy into a spectator. Raises ValidationError on a bad value (a bug in the
    caller, not an operator's mistake).
    """

    loaded = _sourced(env=False, toml_path=None)(**values)
    return Settings.model_construct(**loaded.model_dump())


def _sourced(*, env: bool, toml_path: Path | None) -> type[Settings]:
    """Settings read from the given values, then ``XVRD_*`` if ``env``, then the TOML file
    if any (earlier sources win); nothing else (no .env, no secrets directory)."""

    class _Sourced(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings, env_settings] if env else [init_settings]
            if toml_path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
            return tuple(sources)

    return _Sourced


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``path`` (or XVRD_CONFIG, or the default file), env and ``overrides``.

    ``overrides`` are command-line values; None values are ignored.
    """
    toml_path, table = _config_file(path)
    if toml_path is not None:
        _check_types(table, toml_path)
    _check_variables()
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        loaded = _sourced(env=True, toml_path=toml_path)(**given)
    except ValidationError as exc:
        raise ConfigError(_format(exc, given, toml_path)) from None
    settings = Settings.model_construct(**loaded.model_dump())
    if settings.backend == "simulator" and settings.scenario is None:
        raise ConfigError("scenario: required when backend = 'simulator' (a scenario file)")
    return settings
