"""What the daemon and client commands share: reading settings from flags, exit codes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from xvrd.config import ConfigError, Settings, load_settings

EX_CONFIG = 78  # sysexits.h; same value as xvrd.cli.EX_CONFIG
EX_UNAVAILABLE = 69
EX_NOPERM = 77


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="TOML config file (default /etc/xvrd/xvrd.toml; if that is missing, defaults apply)",
    )


def settings_from(args: argparse.Namespace, overrides: dict[str, dict[str, Any] | Any]) -> Settings:
    """Settings from --config and the environment, then command-line flags on top.

    ``overrides`` maps a top-level key to a value, or a group name to a dict of its keys;
    None values (flag not given) are ignored. Raises `ConfigError` naming the key.
    """
    settings = load_settings(args.config)
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            given = {k: v for k, v in value.items() if v is not None}
            if not given:
                continue
            group: BaseModel = getattr(settings, key)
            try:
                top[key] = type(group).model_validate({**group.model_dump(), **given})
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(x) for x in (key, *err["loc"]))
                raise ConfigError(f"{loc}: {err['msg']} (got {err.get('input')!r})") from None
        elif value is not None:
            top[key] = value
    return settings.model_copy(update=top) if top else settings


def fail(message: str, code: int) -> int:
    print(f"xvrd: {message}", file=sys.stderr)
    return code
