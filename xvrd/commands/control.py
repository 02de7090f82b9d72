"""`xvrd status` and the override commands: clients of the daemon's control socket."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from xvrd.config import ConfigError, load_settings
from xvrd.control.api import ControlError
from xvrd.control.client import NoPermission, NotRunning, call

EX_NOT_RUNNING = 3  # like `systemctl status` for a unit that is not active
EX_REFUSED = 1
EX_NOPERM = 77  # sysexits.h
EX_CONFIG = 78


def fail(message: str, code: int) -> int:
    print(f"xvrd: {message}", file=sys.stderr)
    return code


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="config file naming the socket")
    p.add_argument("--socket", type=Path, help="control socket (default: socket_path)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show what the daemon sees and does")
    _common(p)
    p.add_argument("--json", action="store_true", help="the status document as JSON")
    p.add_argument("--watch", action="store_true", help="refresh every interval until Ctrl-C")
    p.set_defaults(func=status_main)

    p = sub.add_parser("set-weight", help="pin a domain's weight by hand (the loop keeps off it)")
    _common(p)
    p.add_argument("domain", help="name, UUID or domain ID")
    p.add_argument("weight", type=int)
    p.set_defaults(func=lambda a: _change(a, "set_weight", domain=a.domain, weight=a.weight))

    p = sub.add_parser("unset", help="drop a manual weight and put the original back")
    _common(p)
    p.add_argument("domain")
    p.set_defaults(func=lambda a: _change(a, "unset", domain=a.domain))

    p = sub.add_parser("pin-dom0", help="pin dom0 to CPUS and keep domUs off them")
    _common(p)
    p.add_argument("cpus", help="CPU list, e.g. 0 or 0-1,4")
    p.set_defaults(func=_pin_main)

    p = sub.add_parser("unpin-dom0", help="drop the dom0 pinning, put original affinity back")
    _common(p)
    p.set_defaults(func=lambda a: _change(a, "unpin_dom0"))

    p = sub.add_parser("hold", help="stop all automatic changes")
    _common(p)
    p.add_argument("--reason", default="", help="shown by xvrd status")
    p.set_defaults(func=lambda a: _change(a, "hold", reason=a.reason))

    p = sub.add_parser("resume", help="allow automatic changes again")
    _common(p)
    p.set_defaults(func=lambda a: _change(a, "resume"))

    p = sub.add_parser("restore", help="put back every original setting, then hold")
    _common(p)
    p.set_defaults(func=lambda a: _change(a, "restore"))


def parse_cpus(text: str) -> list[int]:
    """``0-2,5`` -> [0, 1, 2, 5]; ValueError for anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (expected e.g. 0 or 0-1,4)")
        cpus.update(range(int(lo), int(hi if sep else lo) + 1))
    return sorted(cpus)


def _socket(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    return load_settings(args.config).socket_path


def _request(args: argparse.Namespace, command: str, **kw: Any) -> tuple[int, Any]:
    try:
        path = _socket(args)
        return 0, call(path, command, **kw)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG), None
    except NotRunning as exc:
        return fail(str(exc), EX_NOT_RUNNING), None
    except NoPermission as exc:
        return fail(str(exc), EX_NOPERM), None
    except ControlError as exc:
        code = EX_NOPERM if exc.code == "forbidden" else EX_REFUSED
        return fail(f"refused ({exc.code}): {exc.message}", code), None


def _change(args: argparse.Namespace, command: str, **kw: Any) -> int:
    rc, result = _request(args, command, **kw)
    if rc == 0:
        print(result)
    return rc


def _pin_main(args: argparse.Namespace) -> int:
    try:
        cpus = parse_cpus(args.cpus)
    except ValueError as exc:
        return fail(str(exc), 2)
    return _change(args, "pin_dom0", cpus=cpus)


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render(doc: dict[str, Any]) -> str:
    """The status document as a table for people."""
    b = doc["backend"]
    age = doc["last_tick_age_s"]
    lines = [
        f"backend   {b['kind']} {b['uri']} ({b['scheduler']}, {b['cpus']} CPUs)"
        + ("" if b["connected"] else f"  DISCONNECTED: {b['last_error']}"),
        f"loop      policy {doc['policy']}, mode {doc['mode']}, every {doc['interval_s']} s,"
        f" {doc['ticks']} ticks, last {_num(age, '.1f')} s ago",
    ]
    hold = doc["hold"]
    if hold["held"]:
        lines.append(f"hold      HELD: {hold['reason']}")
    if doc["dom0_pin"] is not None:
        lines.append(f"dom0 pin  CPUs {','.join(map(str, doc['dom0_pin']))} (manual)")
    lines.append(
        f"host      aggregate {_num(doc['aggregate_mbps'], '.1f')} Mb/s, Jain"
        f" {_num(doc['jain'], '.3f')}, efficiency {_num(doc['efficiency'], '.1%')},"
        f" dom0 CPU {_num(doc['dom0_cpu_pct'], '.1f')} %, idle {_num(doc['idle_pct'], '.1f')} %"
    )
    lines.append("")
    lines.append(
        f"{'DOMAIN':<16} {'ID':>4} {'WEIGHT':>7} {'SOURCE':<8} {'CAP':>4} {'PINNING':<10}"
        f" {'RX Mb/s':>9} {'TX Mb/s':>9} {'CPU %':>6}"
    )
    for d in doc["domains"]:
        pin = ";".join(",".join(map(str, v)) for v in d["pinning"])
        lines.append(
            f"{d['name'][:16]:<16} {d['domid']:>4} {d['weight']:>7} {d['weight_source']:<8}"
            f" {d['cap']:>4} {pin[:10]:<10} {_num(d['rx_mbps'], '9.1f'):>9}"
            f" {_num(d['tx_mbps'], '9.1f'):>9} {_num(d['cpu_pct'], '6.1f'):>6}"
        )
    lines.append("")
    lines.append("findings  " + ("none" if not doc["findings"] else ""))
    lines += [f"  {f['kind']}: {f['summary']}" for f in doc["findings"]]
    lines.append("actions   " + ("none" if not doc["actions"] else ""))
    for a in doc["actions"][-10:]:
        when = str(a.get("time", ""))
        lines.append(
            f"  {when} {a['domain']} {a['setting']} {a['old']} -> {a['new']}: {a['reason']}"
        )
    return "\n".join(lines)


def status_main(args: argparse.Namespace) -> int:
    while True:
        rc, doc = _request(args, "status")
        if rc != 0:
            return rc
        text = json.dumps(doc, indent=1) if args.json else render(doc)
        if args.watch and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text, flush=True)
        if not args.watch:
            return 0
        time.sleep(float(doc.get("interval_s") or 2.0))
