"""CLI sub-commands, one module each, registered by `xvrd.cli`."""

from __future__ import annotations

import argparse
from pathlib import Path


def path_argument(text: str) -> Path:
    """A path flag's value; an empty one is refused, not taken as the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, not empty")
    return Path(text)
