"""The `xvrd` command line: a thin dispatcher over sub-command modules.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from xvrd import __version__

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Registrar]:
    # Imported here so `xvrd --help` stays cheap and each command's heavy imports are its own.
    import simulator.cli as simulate_cli
    import xvrd.commands.control as control_cli
    from xvrd.commands import run

    return [run.register, control_cli.register, simulate_cli.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xvrd",
        description="Self-configuring Xen credit-scheduler daemon and its simulated host.",
    )
    parser.add_argument("--version", action="version", version=f"xvrd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # The command's own usage, not the top-level one argparse would print.
        command: argparse.ArgumentParser = _subparsers(parser)[args.command]
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


if __name__ == "__main__":
    sys.exit(main())
