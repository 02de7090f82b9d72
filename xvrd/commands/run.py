"""`xvrd run`: the daemon (what systemd starts), or a single tick with ``--once``.

Timing: an APScheduler interval job runs the tick every ``interval_s`` seconds, one at a
time; runs missed while a tick overran are coalesced into one. The main thread only waits
for SIGTERM or SIGINT, which stop the job, close the socket and restore settings within a
tick's time.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from xvrd.backends.base import BackendError, BackendUnavailable, Unsupported
from xvrd.backends.factory import make_backend
from xvrd.commands import path_argument
from xvrd.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings
from xvrd.control.server import ControlServer, SocketSetupError
from xvrd.daemon import Daemon
from xvrd.exits import EX_CONFIG, EX_UNAVAILABLE
from xvrd.logs import configure_logging
from xvrd.notify import TickWatchdog, notify, watchdog_interval_s
from xvrd.policy.adaptive import AdaptivePolicy
from xvrd.policy.base import NoopPolicy, Policy
from xvrd.state import StateDirBusy, StateError, lock_state_dir

log = structlog.get_logger("xvrd.run")


_EPILOG = (
    f"exit status: 0 stopped (the log says what was put back); {EX_CONFIG} a bad "
    "configuration, scenario or state file, or a host xvrd cannot tune (nothing on the host "
    "touched); "
    f"{EX_UNAVAILABLE} the host unreachable at the start, or another xvrd running"
)


def _default(key: str) -> str:
    """A setting's built-in default, as --help shows it."""
    return f"default {Settings.model_fields[key].default}"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon (or one tick with --once)",
        description="Run the xvrd daemon: sample the host every interval, apply the policy, "
        "serve the control socket. Flags override the config file and XVRD_* variables.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--config",
        type=path_argument,
        help=f"config file (default $XVRD_CONFIG, else {DEFAULT_CONFIG_PATH})",
    )
    p.add_argument("--backend", choices=["libvirt", "simulator"], help=_default("backend"))
    p.add_argument("--uri", dest="libvirt_uri", help=f"libvirt URI ({_default('libvirt_uri')})")
    p.add_argument("--scenario", type=path_argument, help="simulator backend: scenario file")
    p.add_argument(
        "--speed",
        type=float,
        help=f"simulator backend: simulated s per wall s ({_default('speed')})",
    )
    p.add_argument("--seed", type=int, help=f"simulator backend: random seed ({_default('seed')})")
    p.add_argument(
        "--interval",
        dest="interval_s",
        type=float,
        help=f"seconds between ticks, 0.1 to 3600 ({_default('interval_s')})",
    )
    p.add_argument(
        "--socket",
        dest="socket_path",
        type=path_argument,
        help=f"control socket path ({_default('socket_path')})",
    )
    p.add_argument(
        "--state-dir",
        type=path_argument,
        help=f"directory for persisted state ({_default('state_dir')})",
    )
    p.add_argument("--policy", choices=["adaptive", "noop"], help=_default("policy"))
    p.add_argument(
        "--mode",
        choices=["auto", "advise"],
        help=f"apply changes, or only report ({_default('mode')})",
    )
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help=f"auto: console on a terminal, else json ({_default('log_format')})",
    )
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help=_default("log_level")
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="reconcile, run one tick (two samples one interval apart), print status as "
        "JSON and exit; in auto mode the policy's changes (and saved overrides) are applied "
        "and left in place, --mode advise changes nothing and lists them as not applied",
    )
    p.set_defaults(func=main)


def _settings(args: argparse.Namespace) -> Settings:
    keys = (
        "backend", "libvirt_uri", "scenario", "speed", "seed", "interval_s",
        "socket_path", "state_dir", "policy", "mode", "log_format", "log_level",
    )  # fmt: skip
    return load_settings(args.config, **{k: getattr(args, k) for k in keys})


def make_policy(settings: Settings) -> Policy:
    """The policy in the daemon's slot, as configured."""
    if settings.policy == "adaptive":
        return AdaptivePolicy()
    return NoopPolicy()


def _check_groups(settings: Settings) -> None:
    """The socket's groups must exist; checked before anything touches the host."""
    for key in ("socket_group", "admin_group"):
        name = getattr(settings, key)
        if not name:
            continue
        try:
            grp.getgrnam(name)
        except KeyError:
            raise ConfigError(f"{key}: no such group {name!r} (a group name, or empty)") from None


def socket_in_use(path: Path) -> bool:
    """True when a daemon answers on ``path`` (a stale socket file left by a crash does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _refuse(code: int, message: str) -> int:
    """One line on stderr, then the exit code: how every start that cannot go on ends."""
    print(f"xvrd: {message}", file=sys.stderr)
    return code


def main(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        _check_groups(settings)
    except ConfigError as exc:
        return _refuse(EX_CONFIG, str(exc))
    if socket_in_use(settings.socket_path):
        # Before anything touches the host or the state file: a second daemon that went on to
        # reconcile, fail to bind, then shut down would put back the running daemon's changes;
        # a --once beside it would rewrite its state file behind its back.
        return _refuse(EX_UNAVAILABLE, f"another xvrd is listening on {settings.socket_path}")
    try:
        # Held while this runs: nothing else may rewrite the state meanwhile.
        lock = lock_state_dir(settings.state_dir)
    except StateDirBusy as exc:
        return _refuse(EX_UNAVAILABLE, str(exc))
    except StateError as exc:
        return _refuse(EX_CONFIG, str(exc))
    try:
        return _run_locked(args, settings)
    finally:
        os.close(lock)


def _run_locked(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_format, settings.log_level)
    try:
        backend = make_backend(settings)
        daemon = Daemon(settings, backend, make_policy(settings))
    except (ConfigError, StateError) as exc:
        return _refuse(EX_CONFIG, str(exc))
    except Unsupported as exc:
        return _refuse(EX_CONFIG, f"this host cannot be tuned: {exc}")
    except BackendUnavailable as exc:
        return _refuse(EX_UNAVAILABLE, f"cannot reach the host: {exc}")
    except BackendError as exc:
        # Anything else the host said while being read for the first time: one line, not a
        # traceback, and the exit code systemd retries on (it may pass, as a lost host does).
        return _refuse(EX_UNAVAILABLE, f"cannot read the host: {exc}")
    # One look in advise mode changes nothing at all: not even the saved overrides a
    # restart would apply again (the daemon they belong to applies them when it starts),
    # nor the state file, which reconcile would otherwise rewrite.
    if args.once and settings.mode == "advise":
        daemon.actuator.dry_run = True
        daemon.store.read_only = True
    server = None
    if not args.once:
        try:
            server = ControlServer(
                settings.socket_path,
                daemon,
                socket_group=settings.socket_group or None,
                admin_group=settings.admin_group or None,
            )
            server.bind()  # before reconcile: a socket path that cannot be used touches nothing
        except SocketSetupError as exc:
            daemon.backend.close()
            return _refuse(EX_CONFIG, str(exc))
    try:
        daemon.reconcile()
    except BackendError as exc:
        return _unbind(server, _refuse(EX_UNAVAILABLE, f"cannot reconcile with the host: {exc}"))
    except StateError as exc:
        return _unbind(server, _refuse(EX_CONFIG, str(exc)))
    if server is None:
        return _once(daemon, settings)
    return serve(daemon, settings, server)


def _unbind(server: ControlServer | None, code: int) -> int:
    """Remove the socket of a start that went no further; returns ``code``."""
    if server is not None:
        server.close()
    return code


def _once(daemon: Daemon, settings: Settings) -> int:
    daemon.tick()
    _wait_one_interval(daemon, settings)
    daemon.tick()
    print(json.dumps(daemon.status(), indent=2))
    daemon.backend.close()
    return 0


def _wait_one_interval(daemon: Daemon, settings: Settings) -> None:
    backend = daemon.backend
    host = getattr(backend, "host", None)
    if settings.backend == "simulator" and host is not None and settings.speed:
        # A simulated host need not make the operator wait: advance it by one interval.
        host.advance(settings.interval_s)
    else:
        time.sleep(settings.interval_s)


def serve(daemon: Daemon, settings: Settings, server: ControlServer) -> int:
    """Serve on ``server`` (bound) and tick until SIGTERM, SIGINT or SIGHUP. Returns the
    process exit code."""
    from apscheduler.schedulers.background import BackgroundScheduler

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    # SIGHUP too: the terminal of an `xvrd run` in the foreground going away (an ssh session
    # dropped) stops it like Ctrl-C, settings put back, instead of killing it with the host
    # left tuned. There is no reload: a changed config takes a restart.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    period = watchdog_interval_s()
    watchdog = TickWatchdog(period) if period is not None else None

    def job() -> None:
        if watchdog is not None:
            watchdog.tick_started(time.monotonic())
        try:
            daemon.tick()
        except Exception:
            log.exception("tick failed")
        finally:
            if watchdog is not None:
                watchdog.tick_finished()
        notify(f"STATUS={daemon.status_line()}")

    server.start()
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        job,
        "interval",
        seconds=settings.interval_s,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
        id="tick",
    )
    scheduler.start()
    host = daemon.host
    log.info(
        "started",
        backend=host.kind,
        uri=host.uri,
        scheduler=host.scheduler,
        interval_s=settings.interval_s,
        socket=str(settings.socket_path),
        policy=daemon.policy.name,
        mode=settings.mode,
    )
    notify("READY=1\nSTATUS=started")
    try:
        wait_s = 0.5 if period is None else min(0.5, period / 4)
        while not stop.wait(wait_s):
            if watchdog is not None and watchdog.due(time.monotonic()):
                notify("WATCHDOG=1")
    finally:
        notify("STOPPING=1")
        scheduler.shutdown(wait=True)
        server.close()
        daemon.shutdown()
    return 0
