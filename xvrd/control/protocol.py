"""The control socket's wire format: one JSON object per line each way, then close.

Request:  ``{"version": 1, "command": "set_weight", "args": {"domain": "web1", "weight": 512}}``
Response: ``{"version": 1, "ok": true, "result": ...}`` or
          ``{"version": 1, "ok": false, "error": {"code": "...", "message": "..."}}``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from xvrd.control.api import PROTOCOL_VERSION, ControlAPI, ControlError

#: Commands that only read; everything else changes settings and needs admin rights.
READ_COMMANDS = frozenset({"status"})


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: dict[str, Any]

    @property
    def is_change(self) -> bool:
        return self.command not in READ_COMMANDS


def encode_request(command: str, **args: Any) -> bytes:
    return (
        json.dumps({"version": PROTOCOL_VERSION, "command": command, "args": args}).encode() + b"\n"
    )


def parse_request(raw: bytes) -> Request:
    """Decode one request; `ControlError` ``bad_request`` for anything malformed."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("bad_request", "request is not a JSON object") from None
    if not isinstance(data, dict):
        raise ControlError("bad_request", "request is not a JSON object")
    if data.get("version") != PROTOCOL_VERSION:
        raise ControlError(
            "bad_request",
            f"protocol version {data.get('version')!r} not supported (this daemon speaks"
            f" {PROTOCOL_VERSION})",
        )
    command = data.get("command")
    args = data.get("args", {})
    if not isinstance(command, str) or not isinstance(args, dict):
        raise ControlError("bad_request", "request needs a string 'command' and an object 'args'")
    return Request(command, args)


def _arg(args: dict[str, Any], key: str, kind: type) -> Any:
    value = args.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ControlError("bad_request", f"argument {key!r} must be a {kind.__name__}")
    return value


def dispatch(api: ControlAPI, req: Request) -> Any:
    """Call the API operation a request names."""
    a = req.args
    match req.command:
        case "status":
            return api.status()
        case "set_weight":
            return api.set_weight(_arg(a, "domain", str), _arg(a, "weight", int))
        case "unset":
            return api.unset(_arg(a, "domain", str))
        case "pin_dom0":
            cpus = _arg(a, "cpus", list)
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in cpus):
                raise ControlError("bad_request", "argument 'cpus' must be a list of integers")
            return api.pin_dom0(frozenset(cpus))
        case "unpin_dom0":
            return api.unpin_dom0()
        case "hold":
            return api.hold(str(a.get("reason") or ""))
        case "resume":
            return api.resume()
        case "restore":
            return api.restore()
    raise ControlError("bad_request", f"unknown command {req.command!r}")


def ok(result: Any) -> bytes:
    return json.dumps({"version": PROTOCOL_VERSION, "ok": True, "result": result}).encode() + b"\n"


def error(exc: ControlError) -> bytes:
    body = {"code": exc.code, "message": exc.message}
    return json.dumps({"version": PROTOCOL_VERSION, "ok": False, "error": body}).encode() + b"\n"
