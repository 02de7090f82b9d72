"""`xvrd status` and the override commands: clients of the running daemon's control socket.

Exit codes (the same for every command here):

- 0: done;
- 1: the daemon refused (its message is printed);
- 2: bad command-line input, or a config file that cannot be read (nothing was sent);
- 3: the daemon is not running (no socket, or nothing listening on it);
- 4: permission denied to the socket (not root and not in the socket's group).

Arguments are checked here with the protocol's own limits, so a bad value never reaches the
daemon and fails the way argparse reports every usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from xvrd.commands import path_argument
from xvrd.config import DEFAULT_CONFIG_PATH, ConfigError, configured_socket_path
from xvrd.control import protocol
from xvrd.control.api import ControlError
from xvrd.control.client import (
    DEFAULT_SOCKET_PATH,
    SOCKET_PATH_ENV,
    ControlClient,
    DaemonNotRunning,
    SocketPermissionDenied,
)
from xvrd.control.render import render_status
from xvrd.ranges import parse_number

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_PERMISSION = 4

DEFAULT_WATCH_S = 2.0

_EPILOG = (
    "exit codes: 0 done, 1 refused by the daemon, 2 usage error, 3 daemon not running, "
    "4 permission denied to the socket"
)


DOMAIN_HELP = "name, UUID or ID (a name is matched first)"


# --- argument types: messages say what is accepted ------------------------------------------


def weight_arg(text: str) -> int:
    accepted = f"an integer from {protocol.WEIGHT_MIN} to {protocol.WEIGHT_MAX}"
    try:
        weight = parse_number(text, protocol.WEIGHT_MAX)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {accepted}") from None
    if not protocol.WEIGHT_MIN <= weight <= protocol.WEIGHT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not {accepted}")
    return weight


def cpus_arg(text: str) -> frozenset[int]:
    try:
        return protocol.parse_cpu_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def domain_arg(text: str) -> str:
    if not text.strip() or len(text) > protocol.DOMAIN_MAX_CHARS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a domain name, UUID or ID (1 to {protocol.DOMAIN_MAX_CHARS} "
            "characters)"
        )
    return text


def reason_arg(text: str) -> str:
    if len(text) > protocol.REASON_MAX_CHARS or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"a reason is at most {protocol.REASON_MAX_CHARS} printable characters"
        )
    return text


def interval_arg(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.1 to 3600")
    return seconds


# --- registration ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--socket",
        metavar="PATH",
        type=path_argument,
        default=None,
        help=(
            f"the daemon's control socket (default: ${SOCKET_PATH_ENV}, else the config "
            f"file's socket_path, else {DEFAULT_SOCKET_PATH})"
        ),
    )
    common.add_argument(
        "--config",
        metavar="PATH",
        type=path_argument,
        default=None,
        help=f"the daemon's config file, read for socket_path (default: $XVRD_CONFIG or "
        f"{DEFAULT_CONFIG_PATH} if it exists)",
    )

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        parser = sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=_EPILOG
        )
        parser.set_defaults(func=_checked(func))
        return parser

    status = add("status", "show what the daemon sees and has done", _status)
    status.add_argument("--json", action="store_true", help="print the status document as JSON")
    status.add_argument(
        "--watch",
        nargs="?",
        const=DEFAULT_WATCH_S,
        type=interval_arg,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until interrupted",
    )

    set_weight = add(
        "set-weight", "pin a domain's weight; the automatic policy leaves it alone", _set_weight
    )
    set_weight.add_argument(
        "domain",
        type=domain_arg,
        metavar="DOMAIN",
        help="name, UUID or ID (a name is matched first)",
    )
    set_weight.add_argument(
        "weight",
        type=weight_arg,
        metavar="WEIGHT",
        help=f"credit-scheduler weight, {protocol.WEIGHT_MIN} to {protocol.WEIGHT_MAX}",
    )

    unset = add(
        "unset",
        "drop a manual weight and put the original weight back (the affinity stays); the "
        "policy may manage the domain again",
        _unset,
    )
    unset.add_argument(
        "domain",
        type=domain_arg,
        metavar="DOMAIN",
        help="name, UUID or ID (a name is matched first); a domain not running, by the "
        "name or UUID its manual weight was set for",
    )

    pin = add("pin-dom0", "pin dom0's vCPUs to CPUS and keep domUs off them", _pin_dom0)
    pin.add_argument(
        "cpus",
        type=cpus_arg,
        metavar="CPUS",
        help="online CPUs, at least one left to the domUs: e.g. 0 or 0,1 or 0-1",
    )

    add(
        "unpin-dom0",
        "undo pin-dom0: put back the affinities it changed (not a pinning the policy made)",
        _simple,
    )
    hold = add("hold", "stop all automatic changes until `xvrd resume`", _hold)
    hold.add_argument("--reason", type=reason_arg, default="", metavar="TEXT")
    add("resume", "allow automatic changes again", _simple)
    add(
        "restore",
        "put back every original setting, drop overrides and the dom0 pinning, then hold",
        _simple,
    )


# --- commands -------------------------------------------------------------------------------


def socket_path(args: argparse.Namespace) -> str:
    """--socket, else $XVRD_SOCKET_PATH, else the config file's socket_path, else the default:
    the daemon's own precedence, so both ends agree on where the socket is."""
    if args.socket is not None:
        return str(args.socket)
    from_env = os.environ.get(SOCKET_PATH_ENV)
    if from_env is not None and not from_env.strip():
        # as the daemon refuses it: taking the default instead could reach another daemon
        raise ConfigError(f"{SOCKET_PATH_ENV} is empty: the control socket's path, or unset it")
    if from_env:
        return from_env
    configured = configured_socket_path(args.config)
    return str(configured) if configured is not None else DEFAULT_SOCKET_PATH


def _client(args: argparse.Namespace) -> ControlClient:
    try:
        return ControlClient(socket_path(args))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _checked(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A config file that cannot be read is a usage error: one line, exit 2, nothing sent."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ConfigError as exc:
            print(f"xvrd {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _guarded(command: str, action: Callable[[], None]) -> int:
    """Run one request and map its outcome to an exit code and one line on stderr."""
    try:
        action()
    except ControlError as error:
        print(f"xvrd {command}: {error.message} ({error.code})", file=sys.stderr)
        return EXIT_REFUSED
    except DaemonNotRunning as exc:
        print(exc, file=sys.stderr)
        return EXIT_NOT_RUNNING
    except SocketPermissionDenied as exc:
        print(f"xvrd: {exc}", file=sys.stderr)
        return EXIT_PERMISSION
    return EXIT_OK


def _run(args: argparse.Namespace, call: Callable[[ControlClient], str]) -> int:
    """Run one change and print the daemon's answer."""
    return _guarded(args.command, lambda: print(call(_client(args))))


def _set_weight(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.set_weight(args.domain, args.weight))


def _unset(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.unset(args.domain))


def _pin_dom0(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.pin_dom0(args.cpus))


def _hold(args: argparse.Namespace) -> int:
    return _run(args, lambda c: c.hold(args.reason))


_SIMPLE: dict[str, Callable[[ControlClient], str]] = {
    "unpin-dom0": ControlClient.unpin_dom0,
    "resume": ControlClient.resume,
    "restore": ControlClient.restore,
}


def _simple(args: argparse.Namespace) -> int:
    return _run(args, _SIMPLE[args.command])


def _status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.watch is not None:
        return watch_status(client, args.watch, as_json=args.json)
    return _show_status(client, as_json=args.json, out=sys.stdout)


def _show_status(client: ControlClient, *, as_json: bool, out: TextIO) -> int:
    def show() -> None:
        status = client.status()
        print(json.dumps(status, indent=2) if as_json else render_status(status), file=out)

    return _guarded("status", show)


def watch_status(
    client: ControlClient,
    interval_s: float,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    iterations: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Refresh until interrupted. A daemon that is away (restarting) is reported and waited
    for; a permission error will not go away by itself and ends the watch with its code."""
    stream = out or sys.stdout
    clear = "\033[H\033[2J" if stream.isatty() and not as_json else ""
    shown = 0
    try:
        while iterations is None or shown < iterations:
            stream.write(clear)
            code = _show_status(client, as_json=as_json, out=stream)
            stream.flush()
            shown += 1
            if code == EXIT_PERMISSION:
                return code
            if iterations is None or shown < iterations:
                sleep(interval_s)
    except KeyboardInterrupt:
        pass
    return EXIT_OK
