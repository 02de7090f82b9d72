"""`xvrd run`: the daemon. Also `--once` for a single tick.

Order of start-up, so that a bad setting never touches the host: settings and groups are
validated, the backend is built, the state file is read; only then does the daemon connect,
reconcile and serve. SIGTERM and SIGINT set an event that the main thread waits on, so the
daemon stops within a tick's duration.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

import structlog

from xvrd import logs
from xvrd.backends.base import BackendError
from xvrd.backends.factory import BeforeTick, open_backend
from xvrd.commands.common import EX_CONFIG, EX_UNAVAILABLE, add_config_flag, fail, settings_from
from xvrd.config import ConfigError, Settings
from xvrd.control.server import ControlServer, SocketInUse, group_id
from xvrd.daemon import Daemon
from xvrd.notify import sd_notify, watchdog_interval_s
from xvrd.policy import make_policy
from xvrd.state import StateError, StateStore

log = structlog.get_logger("xvrd.run")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon (or one tick with --once)")
    add_config_flag(p)
    p.add_argument("--backend", choices=["libvirt", "simulator"], help="override backend.kind")
    p.add_argument("--uri", help="override backend.uri (libvirt)")
    p.add_argument("--scenario", help="simulator: scenario file or shipped name (receive-8)")
    p.add_argument("--speed", type=float, help="simulator: simulated seconds per wall second")
    p.add_argument("--seed", type=int, help="simulator: seed of the simulated host")
    p.add_argument("--interval", type=float, help="override interval_s")
    p.add_argument("--socket", type=Path, help="override control.socket")
    p.add_argument("--state-dir", type=Path, help="override state_dir")
    p.add_argument("--once", action="store_true", help="run a single tick, print status, exit")
    p.set_defaults(func=main)


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from(
        args,
        {
            "backend": {
                "kind": args.backend,
                "uri": args.uri,
                "scenario": args.scenario,
                "speed": args.speed,
                "seed": args.seed,
            },
            "control": {"socket": args.socket},
            "state_dir": args.state_dir,
            "interval_s": args.interval,
        },
    )


def main(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        for key in ("group", "admin_group"):
            name = getattr(settings.control, key)
            try:
                group_id(name)
            except KeyError:
                raise ConfigError(f"control.{key}: no such group {name!r}") from None
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    logs.configure(settings.log_format, settings.log_level)
    store = StateStore(settings.state_dir)
    try:
        store.load()
        backend, before_tick = open_backend(settings.backend)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    except StateError as exc:
        return fail(str(exc), EX_CONFIG)
    except (ImportError, BackendError) as exc:
        return fail(f"cannot use backend {settings.backend.kind}: {exc}", EX_UNAVAILABLE)

    policy = make_policy(settings.policy.name, dom0_weight=settings.policy.dom0_weight)
    daemon = Daemon(backend, settings, store, policy=policy, notify=sd_notify)
    try:
        daemon.start()
    except BackendError as exc:
        return fail(f"cannot reach the host: {exc}", EX_UNAVAILABLE)
    try:
        if args.once:
            return _once(daemon, settings, before_tick)
        return _serve(daemon, settings, before_tick)
    finally:
        daemon.stop()
        backend.close()


def _tick(daemon: Daemon, before_tick: BeforeTick | None) -> None:
    if before_tick is not None:
        before_tick()
    daemon.tick()


def _once(daemon: Daemon, settings: Settings, before_tick: BeforeTick | None) -> int:
    """A baseline reading, one interval, one tick: rates need two readings."""
    _tick(daemon, before_tick)
    time.sleep(settings.interval_s / (settings.backend.speed if before_tick else 1.0))
    _tick(daemon, before_tick)
    print(json.dumps(daemon.status(), indent=1))
    return 0


def _serve(daemon: Daemon, settings: Settings, before_tick: BeforeTick | None) -> int:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    c = settings.control
    server = ControlServer(
        daemon, c.socket, group=c.group, admin_group=c.admin_group, max_request=c.max_request_bytes
    )
    try:
        server.start()
    except (SocketInUse, OSError) as exc:
        return fail(str(exc), EX_UNAVAILABLE)

    watchdog = watchdog_interval_s()
    if watchdog is not None and settings.interval_s * 2 > watchdog:
        log.warning(
            "interval_s is too long for the watchdog",
            interval_s=settings.interval_s,
            watchdog_s=watchdog,
        )
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)})
    scheduler.add_job(
        _tick,
        "interval",
        args=(daemon, before_tick),
        seconds=settings.interval_s,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        id="tick",
    )
    # The first tick runs at once (a baseline reading); the job then runs every interval.
    _tick(daemon, before_tick)
    scheduler.start()
    log.info(
        "started",
        backend=settings.backend.kind,
        interval_s=settings.interval_s,
        socket=str(c.socket),
        state_dir=str(settings.state_dir),
    )
    sd_notify("READY=1\nSTATUS=started")
    try:
        stop.wait()
    finally:
        sd_notify("STOPPING=1")
        scheduler.shutdown(wait=True)
        server.stop()
    return 0
