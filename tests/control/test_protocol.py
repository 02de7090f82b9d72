"""The wire protocol: every field validated before anything reaches the daemon."""

from __future__ import annotations

import json
from typing import Any

import pytest

from xvrd.control import protocol
from xvrd.control.api import ControlError


def request(command: str, args: Any = None, **extra: Any) -> bytes:
    document: dict[str, Any] = {"version": 1, "command": command, **extra}
    if args is not None:
        document["args"] = args
    return json.dumps(document).encode()


def refused(raw: bytes) -> ControlError:
    with pytest.raises(ControlError) as caught:
        protocol.decode_request(raw)
    return caught.value


def test_every_command_round_trips_through_its_wire_form() -> None:
    """What the client encodes, the server decodes to the same typed arguments."""
    cases: dict[str, dict[str, Any]] = {
        "status": {},
        "set_weight": {"domain": "web1", "weight": 512},
        "unset": {"domain": "3"},
        "pin_dom0": {"cpus": frozenset({0, 1})},
        "unpin_dom0": {},
        "hold": {"reason": "maintenance"},
        "resume": {},
        "restore": {},
    }
    assert set(cases) == protocol.COMMANDS
    for command, args in cases.items():
        decoded = protocol.decode_request(protocol.encode_request(command, args).rstrip(b"\n"))
        assert decoded.command == command
        assert dict(decoded.args) == args
        assert decoded.is_change == (command != "status")


def test_hold_reason_defaults_to_empty_and_args_may_be_omitted() -> None:
    assert protocol.decode_request(request("hold")).args == {"reason": ""}
    assert protocol.decode_request(request("resume")).args == {}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"version":1,"command":"set_weight","args":{"weight":' + b"9" * 5000 + b"}}", "digits"),
        (b"[" * 60000, "nested too deeply"),
        (b"\xff\xfe", "UTF-8"),
        (b"[1, 2]", "JSON object"),
        (request("reboot"), "unknown command 'reboot'"),
        (request("status", version=2), "unsupported protocol version 2"),
        (json.dumps({"command": "status"}).encode(), "unsupported protocol version None"),
        (json.dumps({"version": True, "command": "status"}).encode(), "version True"),
        (request("status", sudo=True), "unknown request fields: sudo"),
        (request("status", args=[1]), "'args' must be a JSON object"),
        (request("status", args={"x": 1}), "unknown arguments for status: x"),
        (request("set_weight", {"domain": "web1"}), "needs the argument 'weight'"),
        (request("set_weight", {"domain": "", "weight": 5}), "'domain' must be a non-empty"),
        (request("set_weight", {"domain": 7, "weight": 5}), "'domain' must be a non-empty"),
        (request("set_weight", {"domain": "a" * 257, "weight": 5}), "longer than 256"),
        (request("set_weight", {"domain": "a\nb", "weight": 5}), "control characters"),
        (request("set_weight", {"domain": "w", "weight": "5"}), "'weight' must be an integer"),
        (request("set_weight", {"domain": "w", "weight": 5.0}), "'weight' must be an integer"),
        (request("set_weight", {"domain": "w", "weight": True}), "'weight' must be an integer"),
        (request("set_weight", {"domain": "w", "weight": 0}), "from 1 to 65535, got 0"),
        (request("set_weight", {"domain": "w", "weight": 65536}), "got 65536"),
        (request("pin_dom0", {"cpus": []}), "non-empty list"),
        (request("pin_dom0", {"cpus": "0-1"}), "non-empty list"),
        (request("pin_dom0", {"cpus": [-1]}), "got -1"),
        (request("pin_dom0", {"cpus": [0, "1"]}), "got '1'"),
        (request("pin_dom0", {"cpus": [False]}), "got False"),
        (request("pin_dom0", {"cpus": [4096]}), "from 0 to 4095"),
        (request("hold", {"reason": "x" * 201}), "longer than 200"),
        (request("hold", {"reason": 5}), "'reason' must be a string"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(raw: bytes, fragment: str) -> None:
    error = refused(raw)
    assert error.code in {"bad_request", "invalid"}
    assert fragment in error.message


def test_out_of_range_values_are_invalid_not_malformed() -> None:
    """A well-formed request with a value outside the range is `invalid`, like the daemon's."""
    assert refused(request("set_weight", {"domain": "w", "weight": 0})).code == "invalid"
    assert refused(request("hold", {"reason": "x" * 201})).code == "invalid"


def test_boundaries_are_accepted() -> None:
    for weight in (1, 65535):
        args = {"domain": "w", "weight": weight}
        assert protocol.decode_request(request("set_weight", args)).args["weight"] == weight
    assert protocol.decode_request(request("hold", {"reason": "x" * 200})).args["reason"]
    cpus = protocol.decode_request(request("pin_dom0", {"cpus": [4095, 0, 0]})).args["cpus"]
    assert cpus == frozenset({0, 4095})


def test_responses_decode_to_the_result_or_the_daemons_error() -> None:
    assert protocol.decode_response(protocol.encode_result({"a": 1}).rstrip()) == {"a": 1}
    with pytest.raises(ControlError) as caught:
        protocol.decode_response(protocol.encode_error(ControlError("not_found", "no web9")))
    assert (caught.value.code, caught.value.message) == ("not_found", "no web9")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"garbage", "malformed response"),
        (b'{"version": 2, "ok": true, "result": 1}', "speaks protocol version 2"),
        (b'{"version": 1, "ok": false}', "without 'ok'"),
        (b'{"version": 1, "ok": false, "error": {"code": 1}}', "without 'ok'"),
        (b"[]", "not an object"),
    ],
)
def test_responses_this_client_cannot_read_are_reported(raw: bytes, fragment: str) -> None:
    with pytest.raises(ControlError) as caught:
        protocol.decode_response(raw)
    assert caught.value.code == "bad_request"
    assert fragment in caught.value.message


def test_results_that_are_not_json_are_not_encoded() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        protocol.encode_result(float("nan"))


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0,1", {0, 1}), ("0-1", {0, 1}), ("0-3,6", {0, 1, 2, 3, 6}), (" 2 ", {2})],
)
def test_cpu_lists_as_operators_type_them(text: str, cpus: set[int]) -> None:
    assert protocol.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "x", "1-0", "-1", "0,,1", "0-4096", "1.5", "0-"])
def test_bad_cpu_lists_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 0 or 0,1 or 0-3,6"):
        protocol.parse_cpu_list(text)


@pytest.mark.parametrize(
    ("cpus", "text"),
    [([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([3, 1], "1,3"), ([], "-"), (None, "-"), (["a"], "-")],
)
def test_cpu_lists_are_shown_compactly(cpus: object, text: str) -> None:
    assert protocol.format_cpu_list(cpus) == text
