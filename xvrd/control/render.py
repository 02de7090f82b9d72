"""The status document as a table for people (`xvrd status`).

Every value may be null (before the first full tick, or a backend that cannot report it) and
is then shown as ``-``; a value of an unexpected type is shown as it is rather than failing, so
a newer daemon's document still renders.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from xvrd.control.protocol import format_cpu_list

MISSING = "-"
#: How many of the most recent actions the table shows.
ACTIONS_SHOWN = 10


def render_status(status: dict[str, Any]) -> str:
    host_cpus = _host_cpus(status)
    lines = [*_header(status, host_cpus), ""]
    lines += _domain_table(status.get("domains"), host_cpus)
    lines += _unreadable(status.get("unreadable"))
    lines += _absent_overrides(status.get("overrides"))
    lines.append("")
    lines.append(
        "  ".join(
            [
                f"dom0 CPU {_num(status.get('dom0_cpu_pct'), '.1f', ' %')}",
                f"idle {_num(status.get('idle_pct'), '.1f', ' %')}",
                f"aggregate {_num(status.get('aggregate_mbps'), '.1f', ' Mb/s')}",
                f"Jain {_num(status.get('jain'), '.3f')}",
                f"efficiency {_num(status.get('efficiency'), '.2f')}",
            ]
        )
    )
    lines += _findings(status.get("findings"))
    lines += _actions(status.get("actions"))
    lines += _verdicts(status.get("verdicts"))
    return "\n".join(lines)


def _header(status: dict[str, Any], host_cpus: frozenset[int] | None) -> list[str]:
    backend = _section(status, "backend")
    kind, uri = _text(backend.get("kind")), _text(backend.get("uri"))
    connection = ""
    if backend.get("connected") is False:
        connection = "  DISCONNECTED"
        if backend.get("last_error"):
            connection += f": {backend['last_error']}"
    tick_age = status.get("last_tick_age_s")
    tick = "never" if tick_age is None else f"{_num(tick_age, '.1f')} s ago"
    hold = _section(status, "hold")
    if hold.get("held"):
        held = "HELD"
        if hold.get("since") is not None:
            held += f" since {_time(hold['since'])}"
        if hold.get("reason"):
            held += f": {hold['reason']}"
    elif hold.get("held") is False:
        held = "no"
    else:
        held = MISSING
    return [
        f"backend    {kind} ({uri}){connection}",
        f"scheduler  {_text(backend.get('scheduler'))}"
        f"    CPUs {format_cpu_list(host_cpus)}"
        f"    interval {_num(status.get('interval_s'), 'g', ' s')}"
        f"    last tick {tick}    ticks {_text(status.get('ticks'))}",
        f"mode       {_text(status.get('mode'))}    hold {held}"
        # the operator's pin-dom0 only: the policy's pinning shows in the table
        f"    manual dom0 pin {format_cpu_list(status.get('dom0_pin'))}",
    ]


_COLUMNS = ("DOMAIN", "ID", "WEIGHT", "SOURCE", "CAP", "PINNING", "RX Mb/s", "TX Mb/s", "CPU %")
_RIGHT_ALIGNED = frozenset({"ID", "WEIGHT", "CAP", "RX Mb/s", "TX Mb/s", "CPU %"})


def _domain_table(domains: object, host_cpus: frozenset[int] | None) -> list[str]:
    if not isinstance(domains, list) or not domains:
        return ["no domains reported yet"]
    rows = [
        [
            _text(d.get("name")) + (" *" if d.get("network_active") else ""),
            _text(d.get("domid")),
            _text(d.get("weight")),
            _text(d.get("weight_source")),
            _cap(d.get("cap")),
            _pinning(d.get("pinning"), host_cpus),
            _num(d.get("rx_mbps"), ".1f"),
            _num(d.get("tx_mbps"), ".1f"),
            _num(d.get("cpu_pct"), ".1f"),
        ]
        for d in domains
        if isinstance(d, dict)
    ]
    lines = _table(_COLUMNS, rows)
    lines.append("(* network-active)")
    return lines


def _unreadable(unreadable: object) -> list[str]:
    """Running domains the host could not read at the last tick (absent from the table)."""
    if not isinstance(unreadable, list) or not unreadable:
        return []
    lines = ["not read (running, left out of the table and the figures)"]
    for u in unreadable:
        if isinstance(u, dict):
            lines.append(
                f"  {_text(u.get('name'))} (ID {_text(u.get('domid'))}): {_text(u.get('error'))}"
            )
    return lines


def _absent_overrides(overrides: object) -> list[str]:
    """Manual weights of domains not running: kept for when they start again, and dropped
    with `xvrd unset NAME`."""
    if not isinstance(overrides, list):
        return []
    absent = [o for o in overrides if isinstance(o, dict) and o.get("running") is False]
    if not absent:
        return []
    return [
        "manual weights of domains not running (kept for their UUID; `xvrd unset` drops one)",
        *(
            f"  {_text(o.get('name'))} ({_text(o.get('uuid'))}): {_text(o.get('weight'))}"
            for o in absent
        ),
    ]


def _table(columns: Sequence[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(w) if col in _RIGHT_ALIGNED else cell.ljust(w)
            for cell, w, col in zip(cells, widths, columns, strict=True)
        ]
        return "  ".join(out).rstrip()

    return [line(columns), *(line(r) for r in rows)]


def _findings(findings: object) -> list[str]:
    if not isinstance(findings, list):
        return ["", f"findings   {MISSING}"]
    if not findings:
        return ["", "findings   none"]
    lines = ["", "findings"]
    for finding in findings:
        if isinstance(finding, dict):
            lines.append(f"  {_text(finding.get('kind'))}: {_text(finding.get('summary'))}")
    return lines


def _actions(actions: object) -> list[str]:
    if not isinstance(actions, list):
        return ["", f"actions    {MISSING}"]
    if not actions:
        return ["", "actions    none yet"]
    lines = ["", f"last actions (newest last, up to {ACTIONS_SHOWN})"]
    for action in actions[-ACTIONS_SHOWN:]:
        if isinstance(action, dict):
            lines.append(
                f"  {_time(action.get('time'))}  {_text(action.get('domain'))} "
                f"{_text(action.get('setting'))} {_text(action.get('old'))} -> "
                f"{_text(action.get('new'))}: {_text(action.get('reason'))}"
            )
    return lines


def _verdicts(verdicts: object) -> list[str]:
    """Changes the policy tried and how they turned out (absent from older daemons)."""
    if not isinstance(verdicts, list) or not verdicts:
        return []
    lines = ["", f"changes judged (newest last, up to {ACTIONS_SHOWN})"]
    for verdict in verdicts[-ACTIONS_SHOWN:]:
        if isinstance(verdict, dict):
            lines.append(f"  {_time(verdict.get('time'))}  {_text(verdict.get('summary'))}")
    return lines


# --- cells -----------------------------------------------------------------------------------


def _text(value: object) -> str:
    return MISSING if value is None else str(value)


def _num(value: object, spec: str, unit: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _text(value)
    return f"{value:{spec}}{unit}"


def _cap(value: object) -> str:
    # Xen: cap 0 means "no cap".
    return "none" if value == 0 else _num(value, "g")


def _time(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return _text(value)


def _section(status: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested object of the document, or an empty one when it is null or not an object."""
    value = status.get(key)
    return value if isinstance(value, dict) else {}


def _host_cpus(status: dict[str, Any]) -> frozenset[int] | None:
    """The host's online CPUs: their numbers, or 0..n-1 from a document with only a count."""
    backend = _section(status, "backend")
    cpus = backend.get("cpu_ids", backend.get("cpus"))
    if isinstance(cpus, int) and not isinstance(cpus, bool):
        return frozenset(range(cpus))
    if isinstance(cpus, list) and all(isinstance(c, int) for c in cpus):
        return frozenset(cpus)
    return None


def _pinning(pinning: object, host_cpus: frozenset[int] | None) -> str:
    """One CPU list when every vCPU has the same affinity, else one per vCPU; ``all`` for
    an unpinned vCPU (affinity to every online CPU of the host, offline ones aside)."""
    if not isinstance(pinning, list) or not pinning:
        return MISSING
    per_vcpu = [
        "all"
        if host_cpus is not None and isinstance(cpus, list) and host_cpus <= frozenset(cpus)
        else format_cpu_list(cpus)
        for cpus in pinning
    ]
    if len(set(per_vcpu)) == 1:
        return per_vcpu[0]
    return " ".join(f"v{i}:{p}" for i, p in enumerate(per_vcpu))
