"""The control socket's wire protocol: versioned JSON, one request per connection.

Framing: the client connects, writes one JSON object terminated by a newline (or ends its
writes), and reads one JSON object terminated by a newline; the server then closes the
connection. One request per connection keeps the server free of per-connection state and makes
a slow or broken client cost nothing beyond its own connection.

Request::

    {"version": 1, "command": "set_weight", "args": {"domain": "web1", "weight": 512}}

Response::

    {"version": 1, "ok": true, "result": ...}
    {"version": 1, "ok": false, "error": {"code": "not_found", "message": "..."}}

Every field is validated here, before anything reaches the daemon, so a request that fails
validation changes nothing. ``args`` may be omitted for commands that take none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xvrd.control.api import PROTOCOL_VERSION, ControlError
from xvrd.ranges import format_ranges, parse_ranges

#: Largest request the server reads; anything longer is refused and the connection closed.
MAX_REQUEST_BYTES = 64 * 1024
#: Largest response a client accepts (a status document with hundreds of domains fits easily).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Seconds a client has to deliver its whole request.
READ_TIMEOUT_S = 5.0

WEIGHT_MIN = 1
WEIGHT_MAX = 65535
#: Highest CPU number accepted: generous for any Xen host, and it bounds what "0-N" expands to.
CPU_MAX = 4095
REASON_MAX_CHARS = 200
DOMAIN_MAX_CHARS = 256

#: The one command that only reads; every other command changes the daemon's settings.
READ_COMMANDS = frozenset({"status"})

ERROR_CODES = frozenset(
    {"not_found", "invalid", "unsupported", "unavailable", "forbidden", "bad_request"}
)


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request: a known command and its typed arguments."""

    command: str
    args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_change(self) -> bool:
        return self.command not in READ_COMMANDS


# --- argument validators: each takes the raw value and returns the typed one -------------------


def _domain(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlError("bad_request", "'domain' must be a non-empty string")
    if len(value) > DOMAIN_MAX_CHARS:
        raise ControlError("bad_request", f"'domain' is longer than {DOMAIN_MAX_CHARS} characters")
    if any(not ch.isprintable() for ch in value):
        raise ControlError("bad_request", "'domain' contains control characters")
    return value


def _weight(value: object) -> int:
    # bool is an int in Python; `true` is not a weight.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError("bad_request", "'weight' must be an integer")
    if not WEIGHT_MIN <= value <= WEIGHT_MAX:
        raise ControlError(
            "invalid", f"'weight' must be from {WEIGHT_MIN} to {WEIGHT_MAX}, got {value}"
        )
    return value


def _cpus(value: object) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ControlError("bad_request", "'cpus' must be a non-empty list of CPU numbers")
    cpus: set[int] = set()
    for cpu in value:
        if not isinstance(cpu, int) or isinstance(cpu, bool) or not 0 <= cpu <= CPU_MAX:
            raise ControlError(
                "bad_request", f"'cpus' must hold integers from 0 to {CPU_MAX}, got {cpu!r}"
            )
        cpus.add(cpu)
    return frozenset(cpus)


def _reason(value: object) -> str:
    if not isinstance(value, str):
        raise ControlError("bad_request", "'reason' must be a string")
    if len(value) > REASON_MAX_CHARS:
        raise ControlError("invalid", f"'reason' is longer than {REASON_MAX_CHARS} characters")
    if any(not ch.isprintable() for ch in value):
        raise ControlError("bad_request", "'reason' contains control characters")
    return value


Validator = Callable[[object], Any]

#: Per command: required arguments and optional ones with their defaults.
_REQUIRED: dict[str, dict[str, Validator]] = {
    "status": {},
    "set_weight": {"domain": _domain, "weight": _weight},
    "unset": {"domain": _domain},
    "pin_dom0": {"cpus": _cpus},
    "unpin_dom0": {},
    "hold": {},
    "resume": {},
    "restore": {},
}
_OPTIONAL: dict[str, dict[str, tuple[Validator, Any]]] = {
    "hold": {"reason": (_reason, "")},
}

COMMANDS = frozenset(_REQUIRED)


def validate_request(document: object) -> Request:
    """Check a decoded request document field by field; raise `ControlError` on the first fault."""
    if not isinstance(document, dict):
        raise ControlError("bad_request", "a request must be a JSON object")
    unknown = set(document) - {"version", "command", "args"}
    if unknown:
        raise ControlError("bad_request", f"unknown request fields: {', '.join(sorted(unknown))}")
    version = document.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ControlError(
            "bad_request",
            f"unsupported protocol version {version!r}; this daemon speaks {PROTOCOL_VERSION}",
        )
    command = document.get("command")
    if not isinstance(command, str) or command not in COMMANDS:
        raise ControlError(
            "bad_request",
            f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}",
        )
    raw_args = document.get("args", {})
    if not isinstance(raw_args, dict):
        raise ControlError("bad_request", "'args' must be a JSON object")
    required = _REQUIRED[command]
    optional = _OPTIONAL.get(command, {})
    unknown_args = set(raw_args) - set(required) - set(optional)
    if unknown_args:
        raise ControlError(
            "bad_request",
            f"unknown arguments for {command}: {', '.join(sorted(unknown_args))}",
        )
    args: dict[str, Any] = {}
    for name, check in required.items():
        if name not in raw_args:
            raise ControlError("bad_request", f"{command} needs the argument '{name}'")
        args[name] = check(raw_args[name])
    for name, (check, default) in optional.items():
        args[name] = check(raw_args[name]) if name in raw_args else default
    return Request(command=command, args=args)


def decode_request(raw: bytes) -> Request:
    """Parse and validate the bytes of one request (without its trailing newline)."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ControlError("bad_request", "a request must be UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ControlError("bad_request", f"malformed JSON: {exc.msg} at {exc.pos}") from None
    except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() digits
        raise ControlError("bad_request", f"malformed JSON: {exc}") from None
    except RecursionError:  # "[[[[..." deeper than the parser recurses
        raise ControlError("bad_request", "malformed JSON: nested too deeply") from None
    return validate_request(document)


def encode_request(command: str, args: Mapping[str, Any] | None = None) -> bytes:
    """The wire form of a request: what the client sends."""
    wire_args = {
        k: sorted(v) if isinstance(v, frozenset | set) else v for k, v in (args or {}).items()
    }
    document = {"version": PROTOCOL_VERSION, "command": command, "args": wire_args}
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def encode_result(result: Any) -> bytes:
    """A success response; raises TypeError/ValueError if ``result`` is not JSON-serialisable."""
    document = {"version": PROTOCOL_VERSION, "ok": True, "result": result}
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_error(error: ControlError) -> bytes:
    """An error response."""
    document = {
        "version": PROTOCOL_VERSION,
        "ok": False,
        "error": {"code": error.code, "message": error.message},
    }
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def decode_response(raw: bytes) -> Any:
    """The result of a response, or the daemon's refusal raised as `ControlError`.

    A response this client cannot understand is reported as ``bad_request`` naming what was
    wrong, so a version mismatch between CLI and daemon is plain to see.
    """
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlError("bad_request", "the daemon sent a malformed response") from None
    if not isinstance(document, dict):
        raise ControlError("bad_request", "the daemon sent a response that is not an object")
    version = document.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ControlError(
            "bad_request",
            f"the daemon speaks protocol version {version!r}; this client speaks "
            f"{PROTOCOL_VERSION}",
        )
    ok = document.get("ok")
    if ok is True:
        return document.get("result")
    error = document.get("error")
    if ok is False and isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) and isinstance(message, str):
            raise ControlError(code, message)
    raise ControlError("bad_request", "the daemon sent a response without 'ok' and a result")


# --- CPU lists as operators type them ----------------------------------------------------------


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0"``, ``"0,1"``, ``"0-3,6"`` to a set of CPU numbers; ValueError says what is accepted."""
    try:
        return parse_ranges(text, CPU_MAX)
    except ValueError as exc:
        accepted = f"a list of CPU numbers 0..{CPU_MAX} and ranges, e.g. 0 or 0,1 or 0-3,6"
        raise ValueError(f"{text!r} is not {accepted}: {exc}") from None


def format_cpu_list(cpus: object) -> str:
    """The inverse of `parse_cpu_list` for display: ``[0, 1, 2, 5]`` to ``"0-2,5"``."""
    if not isinstance(cpus, list | tuple | set | frozenset):
        return "-"
    return format_ranges(c for c in cpus if isinstance(c, int) and not isinstance(c, bool)) or "-"
